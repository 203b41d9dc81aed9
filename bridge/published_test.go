package bridge

import (
	"encoding/json"
	"strconv"
	"strings"
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
// catch-up messages the first run stored: they are not stored again. A
// message no run stored is. Events with the platform's time are recorded
// in batches by room and minute (the ones near a minute's edge too);
// events without one, under a key each.
func TestCatchUpAfterTheDuplicateWindowStoresOnce(t *testing.T) {
	t.Parallel()
	edge := time.Date(2026, 3, 4, 5, 6, 59, 999_999_000, time.UTC) // a minute's last microsecond
	for _, tc := range []struct {
		name    string
		at      func(i int) time.Time
		batched bool
	}{
		{"platform time", func(i int) time.Time { return edge.Add(time.Duration(i-25) * time.Second) }, true},
		{"no time", func(int) time.Time { return time.Time{} }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			catchUpStoresOnce(t, tc.at, tc.batched)
		})
	}
}

func catchUpStoresOnce(t *testing.T, at func(i int) time.Time, batched bool) {
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
	const stored = 50
	ev := func(i int, gap bool) connector.Event {
		key := "m" + strconv.Itoa(i)
		t := at(i)
		if gap { // the platform lists it at another precision than it pushed it
			t = t.Round(time.Millisecond)
		}
		return connector.Event{Room: "r", Name: "message_created", Key: key, Time: t, Data: json.RawMessage(`{"id":"` + key + `"}`), GapFill: gap}
	}

	h := start()
	for i := range stored {
		h.conn.events <- ev(i, false)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { _, a := h.conn.counts(); return a == stored }, "first events not stored")
	h.stop()

	kv, err := ns.JS.KeyValue(ctx, PublishedBucket("bridge"))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for k := range keys.Keys() {
		n++
		if strings.Contains(k, ".") != batched {
			t.Errorf("record key %q, want batched %v", k, batched)
		}
	}
	if n == 0 || (!batched && n != stored) {
		t.Errorf("%d record keys for %d events (batched %v)", n, stored, batched)
	}

	// Let the duplicate window pass: wait until an id published after the
	// events is accepted again.
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
	for i := range stored + 1 { // found again by catch-up, and one never stored
		h.conn.events <- ev(i, true)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { _, a := h.conn.counts(); return a == stored+1 }, "catch-up events not acked")
	if n := countBySubject(t, ctx, st)["bridge.evt.fake.c1.r.message_created"]; n != stored+1 {
		t.Fatalf("%d events stored, want %d (each once)", n, stored+1)
	}
}
