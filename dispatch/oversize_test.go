package dispatch

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bridgeworks/bridge/claimcheck"
	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/internal/testutil"
	"github.com/bridgeworks/bridge/natsbus"
	"github.com/bridgeworks/bridge/subjects"
)

const smallLimit = 64 << 10

// nearLimitEvent stores an event whose message (with the headers the
// bridge stores it with) is short of max_payload by slack bytes, and
// returns its data.
func nearLimitEvent(t *testing.T, js jetstream.JetStream, id string, slack int) []byte {
	t.Helper()
	m := nats.NewMsg("bridge.evt.band.c1.r1.message_created")
	m.Header.Set(subjects.HeaderContentType, subjects.ContentTypeCloudEvents)
	now := time.Now()
	build := func(n int) []byte {
		data := []byte(`{"id":"` + id + `","content":"` + strings.Repeat("y", n) + `"}`)
		env := subjects.NewEvent("band", "c1", "r1", "message_created", id, now, data)
		m.Header.Set(subjects.HeaderMsgID, env.ID)
		m.Data = env.AppendJSON(nil)
		return data
	}
	build(0)
	data := build(int(smallLimit - int64(slack) - claimcheck.PayloadSize(m)))
	if got := claimcheck.PayloadSize(m); got != smallLimit-int64(slack) {
		t.Fatalf("event message is %d bytes, want %d", got, smallLimit-slack)
	}
	if _, err := js.PublishMsg(testutil.Context(t, 5*time.Second), m); err != nil {
		t.Fatal(err)
	}
	return data
}

// Stored events a few bytes under max_payload: their work requests (the
// event plus Bridge-Attempt) would be over it, so they go out with the data
// by reference, the worker fetches the same bytes, and the room keeps
// dispatching; one the worker fails is dead-lettered, also by reference.
func TestNearLimitEventsDispatchByReference(t *testing.T) {
	t.Parallel()
	s := testutil.NATSWith(t, natsbus.EmbeddedOptions{MaxPayload: smallLimit})
	ctx := testutil.Context(t, 60*time.Second)
	if err := natsbus.EnsureStreams(ctx, s.JS, natsbus.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	d1 := nearLimitEvent(t, s.JS, "m1", 5)
	nearLimitEvent(t, s.JS, "m2", 5)
	publishEvent(t, s.JS, "m3")
	stored, err := s.JS.Stream(ctx, "BRIDGE_EVENTS")
	if err != nil {
		t.Fatal(err)
	}
	m2Stored, err := stored.GetMsg(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}

	reqs := make(chan *nats.Msg, 16)
	sub, err := s.NC.QueueSubscribe("bridge.work.>", "w", func(m *nats.Msg) { reqs <- m })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	d, err := New(Options{JS: s.JS, NC: s.NC, Platform: "band", Conn: "c1", Exec: okDoer{}, Events: []string{"message_created"}, Start: "all", MaxAttempts: 3,
		Timeout: 10 * time.Second, BackoffInitial: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond,
		Log: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = d.Run(rctx); close(done) }()
	defer func() { cancel(); <-done }()

	next := func() (*nats.Msg, subjects.Event) {
		t.Helper()
		select {
		case m := <-reqs:
			ev, err := subjects.DecodeEvent(m.Data)
			if err != nil {
				t.Fatal(err)
			}
			return m, ev
		case <-time.After(15 * time.Second):
			t.Fatal("no work request within 15s")
		}
		return nil, subjects.Event{}
	}
	answer := func(m *nats.Msg, r subjects.WorkReply) {
		b, _ := json.Marshal(r)
		if err := m.Respond(b); err != nil {
			t.Fatal(err)
		}
	}
	m, ev := next()
	ref, ok := ev.Ref()
	if ev.ID != "band:c1:m1" || !ok || len(ev.Data) != 0 {
		t.Fatalf("first request: id %s, reference %v, %d bytes of data", ev.ID, ok, len(ev.Data))
	}
	got, err := claimcheck.Fetch(ctx, s.JS, ref)
	if err != nil || !bytes.Equal(got, d1) {
		t.Fatalf("fetched %d bytes (%v), want the event's %d", len(got), err, len(d1))
	}
	answer(m, subjects.WorkReply{Status: subjects.WorkProcessed})
	m, ev = next()
	if ev.ID != "band:c1:m2" {
		t.Fatalf("second request is %s", ev.ID)
	}
	answer(m, subjects.WorkReply{Status: subjects.WorkFailed, Error: "cannot"})
	m, ev = next()
	if ev.ID != "band:c1:m3" || len(ev.Data) == 0 {
		t.Fatalf("third request: %s with %d bytes of data", ev.ID, len(ev.Data))
	}
	answer(m, subjects.WorkReply{Status: subjects.WorkProcessed})

	dlq, err := s.JS.Stream(ctx, "BRIDGE_DLQ")
	if err != nil {
		t.Fatal(err)
	}
	var dl *jetstream.RawStreamMsg
	testutil.Eventually(t, 10*time.Second, func() bool {
		dl, err = dlq.GetLastMsgForSubject(ctx, "bridge.dlq.band.c1.r1.message_created")
		return err == nil
	}, "no dead letter")
	dref, ok, err := subjects.DataRefFromHeaders(dl.Header.Get)
	if !ok || err != nil || !strings.Contains(dl.Header.Get(subjects.HeaderError), "cannot") {
		t.Fatalf("dead letter: reference %v %v, headers %v", ok, err, dl.Header)
	}
	body, err := claimcheck.Fetch(ctx, s.JS, dref)
	if err != nil || !bytes.Equal(body, m2Stored.Data) {
		t.Fatalf("dead letter body: %d bytes (%v), want the stored event's %d", len(body), err, len(m2Stored.Data))
	}
}

// recDoer answers every command ok and records them.
type recDoer struct {
	mu   sync.Mutex
	cmds []connector.Command
}

func (r *recDoer) Do(_ context.Context, cmd connector.Command) subjects.Result {
	r.mu.Lock()
	r.cmds = append(r.cmds, cmd)
	r.mu.Unlock()
	return subjects.Result{CommandID: cmd.ID, Command: cmd.Name, OK: true, Status: 200}
}

func (r *recDoer) marks() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, c := range r.cmds {
		out = append(out, c.Name+" "+string(c.Args))
	}
	return out
}

// An event stored by reference still has its processing state reported:
// the platform message id is read from the offloaded payload.
func TestOffloadedEventReportsProcessingState(t *testing.T) {
	t.Parallel()
	s := testutil.NATSWith(t, natsbus.EmbeddedOptions{MaxPayload: smallLimit})
	ctx := testutil.Context(t, 30*time.Second)
	if err := natsbus.EnsureStreams(ctx, s.JS, natsbus.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	data := []byte(`{"id":"m9","content":"` + strings.Repeat("q", 2*smallLimit) + `"}`)
	ref, err := claimcheck.New(claimcheck.Options{JS: s.JS, Conn: "c1"}).Put(ctx, data)
	if err != nil {
		t.Fatal(err)
	}
	env := subjects.NewEvent("band", "c1", "r1", "message_created", "m9", time.Now(), data)
	env.Offload(ref)
	m := nats.NewMsg("bridge.evt.band.c1.r1.message_created")
	m.Data = env.AppendJSON(nil)
	m.Header.Set(subjects.HeaderMsgID, env.ID)
	if _, err := s.JS.PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}
	sub, err := s.NC.QueueSubscribe("bridge.work.>", "w", func(m *nats.Msg) { _ = m.Respond([]byte(`{"status":"processed"}`)) })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	rec := &recDoer{}
	d, err := New(Options{JS: s.JS, NC: s.NC, Platform: "band", Conn: "c1", Exec: rec, Events: []string{"message_created"}, Tracker: testTracker{}, Start: "all", Timeout: 10 * time.Second, Log: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = d.Run(rctx); close(done) }()
	defer func() { cancel(); <-done }()
	want := `track_processed {"ref":"m9"}`
	testutil.Eventually(t, 15*time.Second, func() bool { return slices.Contains(rec.marks(), want) }, "%s called", want)
	if got := rec.marks(); !slices.Contains(got, `track_processing {"ref":"m9"}`) {
		t.Errorf("commands %v, want track_processing for m9", got)
	}
}
