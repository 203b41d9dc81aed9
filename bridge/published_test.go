package bridge

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

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

// A catch-up lookup reads a slot's batches with nothing but the bridge's
// documented permissions (no permissions violation), over more batches
// than one fetch takes, and finds what was recorded and nothing else.
func TestPublishedSlotLookupUnderDocumentedPermissions(t *testing.T) {
	t.Parallel()
	srv := testutil.DocumentedNATS(t, docSecurityFile, map[string]string{
		"BRIDGE_NATS_PASSWORD": docBridgePass, "SUPPORT_BOT_NATS_PASSWORD": docWorkerPass,
	})
	var errs workerErrors
	nc, err := nats.Connect(srv.ClientURL(), nats.UserInfo("bridge", docBridgePass),
		nats.CustomInboxPrefix("_BRIDGE_INBOX"), nats.ErrorHandler(errs.handler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := testutil.Context(t, 30*time.Second)
	st, err := openPublished(ctx, js, "bridge", time.Hour, 1)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	var b publishedBatch
	for i := range 300 { // 300 batches of 2 ids: more than one fetch of 256
		b.add(docConn, "r", at, "id-"+strconv.Itoa(2*i))
		b.add(docConn, "r", at, "id-"+strconv.Itoa(2*i+1))
		if err := st.flush(&b); err != nil {
			t.Fatal(err)
		}
	}
	b.add(docConn, "other-room", at, "elsewhere")
	if err := st.flush(&b); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	var cache slotCache
	for id, want := range map[string]bool{"id-0": true, "id-599": true, "id-600": false, "elsewhere": false} {
		// Records are not awaited: the last may still be on its way.
		testutil.Eventually(t, 10*time.Second, func() bool {
			cache = slotCache{}
			found, err := st.has(ctx, &cache, docConn, "r", at, id)
			return err == nil && found == want
		}, "lookup of "+id)
	}
	if e := errs.list(); len(e) > 0 {
		t.Fatalf("errors under the documented permissions: %v", e)
	}
}
