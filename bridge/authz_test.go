package bridge

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bridgeworks/bridge/emulator/bandemu"
	"github.com/bridgeworks/bridge/internal/testutil"
)

// A command for a connection or platform this bridge does not serve is
// refused at publish (no PubAck) instead of being stored for nobody; the
// configured connections, a disabled one included, still take commands.
func TestCommandsForUnservedConnectionsRefused(t *testing.T) {
	t.Parallel()
	env := newBandEnv(t, bandemu.Options{})
	env.spec.config += "[[connection]]\nname = \"spare\"\nplatform = \"band\"\nenabled = false\n[connection.settings]\napi_key_env = \"BAND_KEY\"\n"
	h := runBridge(t, env.spec)
	ctx := testutil.Context(t, 30*time.Second)
	for _, subj := range []string{"bridge.cmd.band.agent.r1.me", "bridge.cmd.band.spare.r1.me"} {
		if _, err := h.js.Publish(ctx, subj, []byte(`{}`)); err != nil {
			t.Errorf("publish %s: %v", subj, err)
		}
	}
	for _, subj := range []string{
		"bridge.cmd.band.ghost-conn.r1.send_message",
		"bridge.cmd.slack.agent.r1.send_message",
		"bridge.cmd.band.Agent.r1.send_message",
	} {
		short, cancel := context.WithTimeout(ctx, 2*time.Second)
		ack, err := h.js.Publish(short, subj, []byte(`{"content":"hi"}`))
		cancel()
		if !errors.Is(err, jetstream.ErrNoStreamResponse) {
			t.Errorf("publish %s: ack %+v, error %v; want %v", subj, ack, err, jetstream.ErrNoStreamResponse)
		}
	}
}
