package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/bridgeworks/bridge/bridge"
	bridgeconfig "github.com/bridgeworks/bridge/config"
	"github.com/bridgeworks/bridge/emulator/chatapiemu"
	"github.com/bridgeworks/bridge/internal/testutil"
	"github.com/bridgeworks/bridge/platforms"
)

// TestChatWorkerPrintsEveryFragment runs the worker against the Chat API
// emulator, the bridge and embedded NATS: it prints each fragment of the
// streamed answer, in order, then the whole answer.
func TestChatWorkerPrintsEveryFragment(t *testing.T) {
	t.Parallel()
	emu := chatapiemu.New(chatapiemu.Options{})
	if _, err := emu.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emu.Close)
	const answer = "Your order left our warehouse this morning."
	emu.SetScript(emu.AgentID(), chatapiemu.Script{Text: answer, FragmentDelay: 5 * time.Millisecond})
	cfg, err := bridgeconfig.Parse([]byte(fmt.Sprintf(`
[nats.embedded]
listen = "127.0.0.1:0"
[http]
listen = "127.0.0.1:0"
[[connection]]
name = "teammate"
platform = "chatapi"
[connection.settings]
base_url = %q
api_key_env = "CHATAPI_API_KEY"
`, emu.BaseURL())), nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.NATS.Embedded.StoreDir = t.TempDir()
	ready := make(chan bridge.Info, 1)
	b, err := bridge.New(cfg, bridge.Options{Log: testutil.Logger(t), Registry: platforms.All(),
		LookupEnv: func(k string) (string, bool) { return emu.APIKey(), k == "CHATAPI_API_KEY" },
		OnReady:   func(i bridge.Info) { ready <- i }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }() // owned: cleanup below
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("bridge: %v", err)
		}
	})
	var info bridge.Info
	select {
	case info = <-ready:
	case err := <-done:
		t.Fatalf("bridge stopped: %v", err)
	case <-testutil.Context(t, 30*time.Second).Done():
		t.Fatal("bridge not ready")
	}

	var out bytes.Buffer
	err = run(testutil.Context(t, 30*time.Second), config{natsURL: info.NATSClientURL, prefix: "bridge", conn: "teammate",
		agent: emu.AgentID(), question: "where is my order?", timeout: 30 * time.Second}, &out)
	if err != nil {
		t.Fatalf("worker: %v\n%s", err, out.String())
	}
	words := strings.Fields(answer)
	var want strings.Builder
	for i, w := range words {
		if i > 0 {
			w = " " + w
		}
		fmt.Fprintf(&want, "fragment %d: %q\n", i, w)
	}
	fmt.Fprintf(&want, "answer (%d fragments): %s\n", len(words), answer)
	if out.String() != want.String() {
		t.Errorf("worker printed\n%s\nwant\n%s", out.String(), want.String())
	}
}

func TestChatWorkerNeedsItsFlags(t *testing.T) {
	t.Parallel()
	for _, c := range []config{{agent: "a", question: "q"}, {conn: "c", question: "q"}, {conn: "c", agent: "a"}} {
		if err := run(t.Context(), c, &bytes.Buffer{}); err == nil {
			t.Errorf("run(%+v) succeeded", c)
		}
	}
}
