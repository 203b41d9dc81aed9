package dispatch

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/internal/testutil"
	"github.com/bridgeworks/bridge/natsbus"
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
