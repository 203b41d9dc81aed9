package bridge

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bridgeworks/bridge/cmdexec"
	"github.com/bridgeworks/bridge/emulator/bandemu"
	"github.com/bridgeworks/bridge/internal/testutil"
)

// TestIdleCommandConsumerReleased: a connection that takes no command for
// CommandsReleaseAfter gives its command consumer back to the server,
// keeping where it stood in the state bucket; a later command brings it
// back; after a restart (the executor starts released, from the saved
// cursor) a new command runs, and every command runs once.
func TestIdleCommandConsumerReleased(t *testing.T) {
	t.Parallel()
	env := newBandEnv(t, bandemu.Options{})
	room := env.emu.AddRoom("ops", env.user.ID)
	spec := env.spec
	spec.releaseAfter = 300 * time.Millisecond
	h := runBridge(t, spec)
	waitState(t, h, StateConnected)

	send := func(h *harness, id string) {
		publishCmd(t, h, room.ID, "send_message", id, map[string]any{"content": id, "mentions": []map[string]any{{"id": env.user.ID}}})
	}
	released := func(h *harness) func() bool {
		return func() bool {
			ctx := testutil.Context(t, 5*time.Second)
			_, err := h.js.Consumer(ctx, "BRIDGE_COMMANDS", cmdexec.ConsumerName("agent"))
			if !errors.Is(err, jetstream.ErrConsumerNotFound) {
				return false
			}
			kv, err := h.js.KeyValue(ctx, StateBucket("bridge"))
			if err != nil {
				t.Fatal(err)
			}
			e, err := kv.Get(ctx, "Commands.agent")
			if err != nil {
				return false
			}
			seqText, _, _ := strings.Cut(string(e.Value()), " ")
			seq, err := strconv.ParseUint(seqText, 10, 64)
			return err == nil && seq > 0
		}
	}
	res := results(t, h)
	for i := range 2 {
		id := fmt.Sprintf("rel-%d", i)
		send(h, id)
		if r := res(id); !r.OK {
			t.Fatalf("%s: %+v", id, r)
		}
		testutil.Eventually(t, 15*time.Second, released(h), "command consumer not released after command %d", i)
	}
	h.stop()

	h = runBridge(t, spec)
	send(h, "rel-down")
	res = results(t, h)
	if r := res("rel-down"); !r.OK {
		t.Fatalf("rel-down: %+v", r)
	}
	testutil.Eventually(t, 15*time.Second, released(h), "command consumer not released after the restart")
	if got := env.emu.AgentMessages(room.ID); len(got) != 3 {
		t.Errorf("%d messages on the platform, want 3: %+v", len(got), got)
	}
}
