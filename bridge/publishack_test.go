package bridge

import (
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bridgeworks/bridge/emulator/bandemu"
	"github.com/bridgeworks/bridge/internal/testutil"
)

// An event whose publish is never acknowledged (the stream lost it, say
// with its leader) is published again after the acknowledgement timeout,
// instead of holding the connection's events for ever.
func TestLostPublishAckIsPublishedAgain(t *testing.T) {
	t.Parallel()
	env := newBandEnv(t, bandemu.Options{})
	room := env.emu.AddRoom("ops", env.user.ID)
	h := runBridge(t, env.spec)
	waitState(t, h, StateConnected)
	ctx := testutil.Context(t, 60*time.Second)
	st, err := h.js.Stream(ctx, "BRIDGE_EVENTS")
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	// The stream stops taking events; a subscriber takes them and never
	// answers, as a stream leader that died with the message.
	lost := cfg
	lost.Subjects = slices.DeleteFunc(slices.Clone(cfg.Subjects), func(s string) bool { return s == "bridge.evt.>" })
	if _, err := h.js.UpdateStream(ctx, lost); err != nil {
		t.Fatal(err)
	}
	before := connStatus(h.info.HTTPAddr).EventsPublished
	swallowed := make(chan struct{}, 16)
	sub, err := h.info.Conn.Subscribe("bridge.evt.>", func(*nats.Msg) { swallowed <- struct{}{} })
	if err != nil {
		t.Fatal(err)
	}
	if err := h.info.Conn.Flush(); err != nil {
		t.Fatal(err)
	}
	m := env.emu.PostUserMessage(room.ID, env.user.ID, "@Bridge Bot lost on the way")
	select {
	case <-swallowed:
	case <-ctx.Done():
		t.Fatal("the event was never published")
	}
	_ = sub.Unsubscribe()
	if _, err := h.js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	// Settled: the connection's events flow again (a publish waiting for
	// an acknowledgement that never comes would hold every later one).
	testutil.Eventually(t, 30*time.Second, func() bool {
		return connStatus(h.info.HTTPAddr).EventsPublished > before
	}, "the lost publish is never settled")
	testutil.Eventually(t, 30*time.Second, func() bool {
		_, count := storedMessages(t, h.js)
		return count[m.ID] == 1
	}, "the event is stored once")
}
