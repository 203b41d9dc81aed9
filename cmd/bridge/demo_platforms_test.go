package main

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/bridgeworks/bridge/internal/testutil"
)

// runPlatformDemo runs one platform's demo with 2 rooms x 3 messages and
// returns its output; the demo must end without error.
func runPlatformDemo(t *testing.T, run func(context.Context, demoOptions, io.Writer, io.Writer) error) string {
	t.Helper()
	var out, errOut bytes.Buffer
	ctx := testutil.Context(t, 60*time.Second)
	if err := run(ctx, demoOptions{rooms: 2, messages: 3, natsAddr: "127.0.0.1:0"}, &out, &errOut); err != nil {
		t.Fatalf("demo: %v\n%s\n%s", err, out.String(), errOut.String())
	}
	return out.String()
}

func wantLines(t *testing.T, out string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
}

func TestDemoPolyAITalksInEverySession(t *testing.T) {
	t.Parallel()
	out := runPlatformDemo(t, runDemoPolyAI)
	wantLines(t, out, "6 of 6 messages answered", "2 of 2 sessions ended", "the agent's 8 messages",
		".poly_agent_message  \"Hi, I'm Aria.", ".session_end  REASON_USER_END")
}

func TestDemoChatAPIStreamsEveryAnswer(t *testing.T) {
	t.Parallel()
	out := runPlatformDemo(t, runDemoChatAPI)
	wantLines(t, out, "6 of 6 questions answered", "text_delta        #0 ", "message_completed ")
}

func TestDemoAgentConnectHoldsTheCooldown(t *testing.T) {
	t.Parallel()
	out := runPlatformDemo(t, runDemoAgentConnect)
	wantLines(t, out, "6 of 6 messages answered", "2 of 2 sessions ended", "retry_after_ms", "cooldowns 1",
		"6 text frames arrived")
	if strings.Contains(out, "held one session for 0.") {
		t.Errorf("the cooldown held nothing:\n%s", out)
	}
}

func TestDemoUnknownPlatform(t *testing.T) {
	t.Parallel()
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"demo", "--platform", "slack"}, &out, &errOut); code == 0 {
		t.Fatal("exit 0 for an unknown platform")
	}
	if !strings.Contains(errOut.String(), `--platform "slack"`) {
		t.Errorf("the error does not name the flag: %q", errOut.String())
	}
}
