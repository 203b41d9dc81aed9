package bridge

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/connector/band"
	"github.com/bridgeworks/bridge/emulator/bandemu"
	"github.com/bridgeworks/bridge/internal/testutil"
)

// An event whose publish is never acknowledged (the stream lost it, say
// with its leader) is published again after the acknowledgement timeout,
// instead of holding the connection's events for ever; and while it is
// published again, a later event of its room waits, so the room's order
// holds in the stream.
func TestLostPublishAckIsPublishedAgainFirst(t *testing.T) {
	t.Parallel()
	env := newBandEnv(t, bandemu.Options{})
	room := env.emu.AddRoom("ops", env.user.ID)
	// No idle catch-up during the test: the swallowed publishes are the
	// publisher's own.
	env.spec.registry = connector.Registry{"band": band.Factory(false, band.Options{IdleResync: time.Hour})}
	h := runBridge(t, env.spec)
	waitState(t, h, StateConnected)
	ctx := testutil.Context(t, 90*time.Second)
	swallowed, restore := loseEvents(ctx, t, h)
	before := connStatus(h.info.HTTPAddr).EventsPublished
	m1 := env.emu.PostUserMessage(room.ID, env.user.ID, "@Bridge Bot first")
	// The first publish, then (after the acknowledgement timeout) the first
	// try to publish it again: both swallowed.
	for n := 0; n < 2; {
		select {
		case id := <-swallowed:
			if id == "band:agent:"+m1.ID {
				n++
			}
		case <-ctx.Done():
			t.Fatal("the first event was not published twice")
		}
	}
	// The stream is back while that try waits for its answer; a later
	// message of the room arrives meanwhile.
	restore()
	m2 := env.emu.PostUserMessage(room.ID, env.user.ID, "@Bridge Bot second")
	testutil.Eventually(t, 60*time.Second, func() bool {
		return connStatus(h.info.HTTPAddr).EventsPublished >= before+2
	}, "the lost publish is never settled")
	testutil.Eventually(t, 30*time.Second, func() bool {
		_, count := storedMessages(t, h.js)
		return count[m1.ID] == 1 && count[m2.ID] == 1
	}, "both events stored once")
	perRoom, _ := storedMessages(t, h.js)
	if got := perRoom[room.ID]; !slices.Equal(got, []string{m1.ID, m2.ID}) {
		t.Fatalf("stored %v, want %v: the later event overtook the one published again", got, []string{m1.ID, m2.ID})
	}
}

// A holder whose lease passed to another process closes its platform
// session at once, even with publishes still unacknowledged (NATS away):
// the drain never keeps a stale holder's socket open while the new holder
// connects (Band would supersede one of them).
func TestLostLeaseClosesTheSessionWithoutDrain(t *testing.T) {
	t.Parallel()
	env := newBandEnv(t, bandemu.Options{})
	room := env.emu.AddRoom("ops", env.user.ID)
	env.spec.registry = connector.Registry{"band": band.Factory(false, band.Options{IdleResync: time.Hour})}
	env.spec.config = "[lease]\nttl = \"3s\"\n" + env.spec.config
	h := runBridge(t, env.spec) // drains for 15 s at most
	waitState(t, h, StateConnected)
	ctx := testutil.Context(t, 60*time.Second)
	swallowed, _ := loseEvents(ctx, t, h)
	env.emu.PostUserMessage(room.ID, env.user.ID, "@Bridge Bot never acknowledged")
	select {
	case <-swallowed:
	case <-ctx.Done():
		t.Fatal("the event was never published")
	}
	// Another process takes the lease.
	kv, err := h.js.KeyValue(ctx, LeaseBucket("bridge"))
	if err != nil {
		t.Fatal(err)
	}
	if err := kv.Delete(ctx, "agent"); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Create(ctx, "agent", []byte(`{"owner":"other","instance":"x"}`)); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 8*time.Second, func() bool { return !env.emu.Connected(env.emu.AgentID()) },
		"the stale holder's platform session is still open")
}

// loseEvents makes the events stream stop taking events and a subscriber
// take them without ever answering, as a stream leader that died with the
// messages: publishes get no acknowledgement. It returns the ids
// (Nats-Msg-Id) of what the subscriber took, and restore, which gives the
// stream its subjects back and ends the subscriber.
func loseEvents(ctx context.Context, t *testing.T, h *harness) (swallowed <-chan string, restore func()) {
	t.Helper()
	st, err := h.js.Stream(ctx, "BRIDGE_EVENTS")
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	lost := cfg
	lost.Subjects = slices.DeleteFunc(slices.Clone(cfg.Subjects), func(s string) bool { return s == "bridge.evt.>" })
	if _, err := h.js.UpdateStream(ctx, lost); err != nil {
		t.Fatal(err)
	}
	ch := make(chan string, 64)
	sub, err := h.info.Conn.Subscribe("bridge.evt.>", func(m *nats.Msg) { ch <- m.Header.Get("Nats-Msg-Id") })
	if err != nil {
		t.Fatal(err)
	}
	if err := h.info.Conn.Flush(); err != nil {
		t.Fatal(err)
	}
	return ch, func() {
		if _, err := h.js.UpdateStream(ctx, cfg); err != nil {
			t.Fatal(err)
		}
		_ = sub.Unsubscribe()
	}
}
