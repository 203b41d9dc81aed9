package dispatch

import (
	"context"
	"encoding/json"
	"slices"
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

// testTracker is a platform's processing-state ability with names of its
// own: the reference is the payload's "id" of message_created events, and
// the state goes out as track_<state> {"ref", "why"}. Dispatch knows none of
// these names.
type testTracker struct{}

func (testTracker) ProcessingRef(event string, data json.RawMessage) (string, bool) {
	var p struct {
		ID string `json:"id"`
	}
	if event != "message_created" || json.Unmarshal(data, &p) != nil || p.ID == "" {
		return "", false
	}
	return p.ID, true
}

func (testTracker) ProcessingCommand(state connector.ProcessingState, room, id, reason string) connector.Command {
	args := map[string]string{"ref": id}
	if reason != "" {
		args["why"] = reason
	}
	b, _ := json.Marshal(args)
	return connector.Command{Name: "track_" + state.String(), Room: room, Args: b}
}

// runRule starts a dispatcher for o until the test ends, with a worker
// that answers every work request with reply.
func runRule(t *testing.T, s *testutil.Server, o Options, reply string) {
	t.Helper()
	sub, err := s.NC.QueueSubscribe("bridge.work.>", "w", func(m *nats.Msg) { _ = m.Respond([]byte(reply)) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	o.JS, o.NC, o.Platform, o.Conn, o.Log = s.JS, s.NC, "band", "c1", testutil.Logger(t)
	d, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = d.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

// A rule's event names match the events as the bridge publishes them
// (lower case, escaped): a configured "Message_Created" dispatches
// message_created events.
func TestEventNamesInContractForm(t *testing.T) {
	t.Parallel()
	s := testutil.NATS(t)
	ctx := testutil.Context(t, 30*time.Second)
	if err := natsbus.EnsureStreams(ctx, s.JS, natsbus.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	rec := &recDoer{}
	runRule(t, s, Options{Exec: rec, Events: []string{"Message_Created"}, Start: "all"},
		`{"status":"processed","commands":[{"command":"send_message","args":{}}]}`)
	publishEvent(t, s.JS, "m1")
	testutil.Eventually(t, 15*time.Second, func() bool { return len(rec.marks()) > 0 }, "event not dispatched")
}

// Without a tracker, dispatch makes no processing-state calls: only the
// worker's commands run. With one, the calls are the tracker's, in order:
// processing, then failed (the worker's reason) for a failed attempt, or
// processed.
func TestProcessingStateThroughTracker(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		tracker connector.ProcessingTracker
		reply   string
		want    []string
	}{
		{"none", nil, `{"status":"processed","commands":[{"command":"send_message","args":{}}]}`,
			[]string{"send_message {}"}},
		{"processed", testTracker{}, `{"status":"processed","commands":[{"command":"send_message","args":{}}]}`,
			[]string{`track_processing {"ref":"m1"}`, "send_message {}", `track_processed {"ref":"m1"}`}},
		{"failed", testTracker{}, `{"status":"failed","error":"no model"}`,
			[]string{`track_processing {"ref":"m1"}`, `track_failed {"ref":"m1","why":"no model"}`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := testutil.NATS(t)
			ctx := testutil.Context(t, 30*time.Second)
			if err := natsbus.EnsureStreams(ctx, s.JS, natsbus.StreamOptions{}); err != nil {
				t.Fatal(err)
			}
			rec := &recDoer{}
			runRule(t, s, Options{Exec: rec, Events: []string{"message_created"}, Tracker: tc.tracker, Start: "all", MaxAttempts: 1}, tc.reply)
			publishEvent(t, s.JS, "m1")
			testutil.Eventually(t, 15*time.Second, func() bool {
				info, err := s.JS.Consumer(ctx, "BRIDGE_EVENTS", ConsumerName("c1"))
				if err != nil {
					return false
				}
				ci, err := info.Info(ctx)
				return err == nil && ci.AckFloor.Stream == 1
			}, "event not settled")
			if got := rec.marks(); !slices.Equal(got, tc.want) {
				t.Fatalf("commands %v, want %v", got, tc.want)
			}
		})
	}
}

// executedDoer is recDoer with the executor's Executed: ids in done count as
// executed by an earlier run.
type executedDoer struct {
	recDoer
	done map[string]bool
}

func (e *executedDoer) Executed(_ context.Context, cmd connector.Command) (bool, error) {
	return e.done[cmd.ID], nil
}

// A run that marked an event processed and died before settling it leaves
// the event to its successor: the successor finds the processed call
// remembered and settles the event, with no second processing attempt on
// the platform and no second work request.
func TestRedeliveredAfterProcessedIsSettledOnce(t *testing.T) {
	t.Parallel()
	s := testutil.NATS(t)
	ctx := testutil.Context(t, 30*time.Second)
	if err := natsbus.EnsureStreams(ctx, s.JS, natsbus.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	publishEvent(t, s.JS, "m1")
	publishEvent(t, s.JS, "m2")
	ex := &executedDoer{done: map[string]bool{"band:c1:m1:processed": true}}
	o := Options{JS: s.JS, NC: s.NC, Platform: "band", Conn: "c1", Exec: ex, Events: []string{"message_created"},
		Tracker: testTracker{}, Start: "all", MaxAttempts: 1, AckWait: time.Second, Log: testutil.Logger(t)}
	d, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	// The crashed predecessor: m1 delivered to it and never settled.
	cons, err := s.JS.CreateOrUpdateConsumer(ctx, "BRIDGE_EVENTS", jetstream.ConsumerConfig{
		Durable: ConsumerName("c1"), FilterSubjects: d.consumerConfig().FilterSubjects, DeliverPolicy: jetstream.DeliverAllPolicy, AckWait: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for range batch.Messages() {
		n++
	}
	if n != 1 {
		t.Fatalf("predecessor got %d messages, want 1", n)
	}
	var mu sync.Mutex
	var work []string
	sub, err := s.NC.QueueSubscribe("bridge.work.>", "w", func(m *nats.Msg) {
		mu.Lock()
		work = append(work, m.Header.Get(subjects.HeaderMsgID))
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
	testutil.Eventually(t, 20*time.Second, func() bool {
		ci, err := cons.Info(ctx)
		return err == nil && ci.AckFloor.Stream == 2
	}, "events not settled")
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(work, []string{"band:c1:m2"}) {
		t.Errorf("work requests %v, want only m2's", work)
	}
	want := []string{`track_processing {"ref":"m2"}`, `track_processed {"ref":"m2"}`}
	if got := ex.marks(); !slices.Equal(got, want) {
		t.Errorf("processing-state calls %v, want %v (none for m1)", got, want)
	}
}

// blockingProcessed is recDoer whose processed call never returns before
// the dispatcher gives up (its hard context ends), as a platform call cut
// short by the drain deadline or a lease that passed to another process.
type blockingProcessed struct{ recDoer }

func (b *blockingProcessed) Do(ctx context.Context, cmd connector.Command) subjects.Result {
	if cmd.Name == "track_processed" {
		<-ctx.Done()
		return subjects.Result{CommandID: cmd.ID, Command: cmd.Name, Error: &subjects.Error{Code: subjects.ErrCodeUnavailable, Retryable: true}}
	}
	return b.recDoer.Do(ctx, cmd)
}

// A run stopped before the platform heard that an event is processed
// hands the event back instead of settling it: the next run marks it.
func TestStoppedBeforeProcessedHandsBack(t *testing.T) {
	t.Parallel()
	s := testutil.NATS(t)
	ctx := testutil.Context(t, 30*time.Second)
	if err := natsbus.EnsureStreams(ctx, s.JS, natsbus.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	sub, err := s.NC.QueueSubscribe("bridge.work.>", "w", func(m *nats.Msg) { _ = m.Respond([]byte(`{"status":"processed"}`)) })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	publishEvent(t, s.JS, "m1")
	o := Options{JS: s.JS, NC: s.NC, Platform: "band", Conn: "c1", Events: []string{"message_created"},
		Tracker: testTracker{}, Start: "all", MaxAttempts: 1, DrainTimeout: 200 * time.Millisecond, Log: testutil.Logger(t)}
	first := &blockingProcessed{}
	o.Exec = first
	d, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = d.Run(rctx); close(done) }()
	testutil.Eventually(t, 10*time.Second, func() bool { return slices.Contains(first.marks(), `track_processing {"ref":"m1"}`) }, "m1 dispatched")
	cancel()
	<-done
	cons, err := s.JS.Consumer(ctx, "BRIDGE_EVENTS", ConsumerName("c1"))
	if err != nil {
		t.Fatal(err)
	}
	if ci, err := cons.Info(ctx); err != nil || ci.AckFloor.Stream != 0 {
		t.Fatalf("after the stopped run: ack floor %v (%v), want m1 not settled", ci.AckFloor.Stream, err)
	}
	// The next run marks it processed.
	next := &recDoer{}
	o.Exec = next
	runRule(t, s, o, `{"status":"processed"}`)
	testutil.Eventually(t, 15*time.Second, func() bool {
		ci, err := cons.Info(ctx)
		return err == nil && ci.AckFloor.Stream == 1
	}, "m1 not settled by the next run")
	if !slices.Contains(next.marks(), `track_processed {"ref":"m1"}`) {
		t.Fatalf("the next run's calls %v, want m1 marked processed", next.marks())
	}
}
