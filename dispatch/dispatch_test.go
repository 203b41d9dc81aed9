package dispatch

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/internal/testutil"
	"github.com/bridgeworks/bridge/natsbus"
	"github.com/bridgeworks/bridge/subjects"
)

// okDoer answers every command ok without a platform: these tests are about
// the dispatcher's ordering; the platform round trips are tested end to end
// in package bridge.
type okDoer struct{}

func (okDoer) Do(_ context.Context, cmd connector.Command) subjects.Result {
	return subjects.Result{CommandID: cmd.ID, Command: cmd.Name, OK: true, Status: 200}
}

func publishEvent(t *testing.T, js jetstream.JetStream, id string) {
	t.Helper()
	env := subjects.NewEvent("band", "c1", "r1", "message_created", id, time.Now(), json.RawMessage(`{"id":"`+id+`"}`))
	m := nats.NewMsg("bridge.evt.band.c1.r1.message_created")
	m.Data = env.AppendJSON(nil)
	m.Header.Set(subjects.HeaderMsgID, env.ID)
	if _, err := js.PublishMsg(testutil.Context(t, 5*time.Second), m); err != nil {
		t.Fatal(err)
	}
}

// A predecessor (a replica handing over, or a crashed run) held messages;
// it acks one and hands the other back. The new dispatcher must not stall
// behind its barrier, and must keep the room's order: m2 before m3.
func TestBarrierAfterHandOver(t *testing.T) {
	t.Parallel()
	s := testutil.NATS(t)
	ctx := testutil.Context(t, 30*time.Second)
	if err := natsbus.EnsureStreams(ctx, s.JS, natsbus.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	publishEvent(t, s.JS, "m1")
	publishEvent(t, s.JS, "m2")
	d, err := New(Options{JS: s.JS, NC: s.NC, Platform: "band", Conn: "c1", Exec: okDoer{}, Events: []string{"message_created"}, AckWait: 10 * time.Second, // its time limit (3×) is beyond the wait below
		Log: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	cons, err := s.JS.CreateOrUpdateConsumer(ctx, "BRIDGE_EVENTS", d.consumerConfig())
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(2, jetstream.FetchMaxWait(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var old []jetstream.Msg
	for m := range batch.Messages() {
		old = append(old, m)
	}
	if len(old) != 2 {
		t.Fatalf("predecessor holds %d messages, want 2", len(old))
	}

	var mu sync.Mutex
	var got []string
	sub, err := s.NC.QueueSubscribe("bridge.work.>", "w", func(m *nats.Msg) {
		mu.Lock()
		got = append(got, m.Header.Get(subjects.HeaderMsgID))
		mu.Unlock()
		_ = m.Respond([]byte(`{"status":"processed"}`))
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = d.Run(rctx); close(done) }()
	defer func() { cancel(); <-done }()

	// Started: its consumer info, taken now, has the predecessor's two messages pending.
	testutil.Eventually(t, 10*time.Second, d.ready.Load, "dispatcher not started")
	_ = old[0].Ack()
	_ = old[1].NakWithDelay(100 * time.Millisecond)
	publishEvent(t, s.JS, "m3")
	testutil.Eventually(t, 15*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(got) >= 2 }, "m2 and m3 dispatched")
	mu.Lock()
	defer mu.Unlock()
	if got[0] != "band:c1:m2" || got[1] != "band:c1:m3" {
		t.Fatalf("dispatched %v, want m2 then m3", got)
	}
}
