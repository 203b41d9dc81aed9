package bridge

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bridgeworks/bridge/config"
	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/internal/testutil"
	"github.com/bridgeworks/bridge/subjects"
)

// A bridge restarted later than the duplicate window, whose connector
// remembers nothing (a restart, or a memory past its bound), finds by
// catch-up a message the first run stored: it is not stored again. A
// message no run stored is.
func TestCatchUpAfterTheDuplicateWindowStoresOnce(t *testing.T) {
	t.Parallel()
	ns := testutil.NATS(t)
	ctx := testutil.Context(t, 60*time.Second)
	start := func() *harness {
		sc := newScripted()
		reg := connector.Registry{"fake": {Platform: "fake", New: func(connector.Config, connector.Deps) (connector.Connector, error) { return sc, nil }}}
		h := runBridge(t, bridgeSpec{
			config:   "[[connection]]\nname = \"c1\"\nplatform = \"fake\"\n[connection.settings]\napi_key_env = \"FAKE_KEY\"\n",
			registry: reg, env: map[string]string{"FAKE_KEY": "k"}, natsURL: ns.URL,
			// Below what validation allows, so that the test can outlast it.
			tweak: func(c *config.Config) { c.NATS.DuplicateWindow = config.Duration(200 * time.Millisecond) },
		})
		h.conn = sc
		return h
	}
	ev := func(key string, gap bool) connector.Event {
		return connector.Event{Room: "r", Name: "message_created", Key: key, Data: json.RawMessage(`{"id":"` + key + `"}`), GapFill: gap}
	}

	h := start()
	h.conn.events <- ev("m1", false)
	testutil.Eventually(t, 10*time.Second, func() bool { _, a := h.conn.counts(); return a == 1 }, "m1 not stored")
	h.stop()

	// Let the duplicate window pass: wait until an id published after m1 is
	// accepted again.
	st, err := ns.JS.Stream(ctx, "BRIDGE_EVENTS")
	if err != nil {
		t.Fatal(err)
	}
	probe := func() bool {
		m := nats.NewMsg("bridge.evt.fake.c1.probe.x")
		m.Header.Set(subjects.HeaderMsgID, "probe")
		ack, err := ns.JS.PublishMsg(ctx, m)
		return err == nil && !ack.Duplicate
	}
	probe()
	testutil.Eventually(t, 20*time.Second, probe, "duplicate window did not pass")

	h = start()
	h.conn.events <- ev("m1", true) // found again by catch-up
	h.conn.events <- ev("m2", true) // never stored
	testutil.Eventually(t, 10*time.Second, func() bool { _, a := h.conn.counts(); return a == 2 }, "catch-up events not acked")
	if n := countBySubject(t, ctx, st)["bridge.evt.fake.c1.r.message_created"]; n != 2 {
		t.Fatalf("%d events stored, want 2 (m1 once, m2 once)", n)
	}
}
