package dispatch

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/internal/testutil"
	"github.com/bridgeworks/bridge/natsbus"
	"github.com/bridgeworks/bridge/subjects"
)

// countingDoer counts the reply commands it executes, by command id.
type countingDoer struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *countingDoer) Do(_ context.Context, cmd connector.Command) subjects.Result {
	if cmd.ID != "" {
		c.mu.Lock()
		c.n[cmd.ID]++
		c.mu.Unlock()
	}
	return subjects.Result{CommandID: cmd.ID, Command: cmd.Name, OK: true, Status: 200}
}

// A rule added to a connection with history starts with the events stored
// after it (by default); when its consumer is lost between runs, no event
// goes to the worker twice and no reply command runs twice.
func TestNewRuleAndLostConsumerDispatchOnce(t *testing.T) {
	t.Parallel()
	s := testutil.NATS(t)
	ctx := testutil.Context(t, 60*time.Second)
	if err := natsbus.EnsureStreams(ctx, s.JS, natsbus.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	sent := map[string]int{}
	sub, err := s.NC.QueueSubscribe("bridge.work.>", "w", func(m *nats.Msg) {
		mu.Lock()
		sent[m.Header.Get(subjects.HeaderMsgID)]++
		mu.Unlock()
		_ = m.Respond([]byte(`{"status":"processed","commands":[{"command":"send_message","args":{"content":"ok"}}]}`))
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	sentCount := func(prefix string) (events, total int) {
		mu.Lock()
		defer mu.Unlock()
		for id, n := range sent {
			if strings.HasPrefix(id, "band:c1:"+prefix) {
				events++
				total += n
			}
		}
		return events, total
	}
	doer := &countingDoer{n: map[string]int{}}
	run := func() (stop func()) {
		d, err := New(Options{JS: s.JS, NC: s.NC, Platform: "band", Conn: "c1", Exec: doer, Events: []string{"message_created"}, Log: testutil.Logger(t)})
		if err != nil {
			t.Fatal(err)
		}
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { _ = d.Run(rctx); close(done) }()
		testutil.Eventually(t, 10*time.Second, func() bool {
			_, err := s.JS.Consumer(ctx, "BRIDGE_EVENTS", ConsumerName("c1"))
			return err == nil
		}, "consumer not created")
		return func() { cancel(); <-done }
	}

	for i := range 20 {
		publishEvent(t, s.JS, fmt.Sprintf("h%d", i)) // history, before the rule
	}
	stop := run()
	for i := range 30 {
		publishEvent(t, s.JS, fmt.Sprintf("e%d", i))
	}
	testutil.Eventually(t, 20*time.Second, func() bool { n, _ := sentCount("e"); return n == 30 }, "events after the rule not dispatched")
	if n, _ := sentCount("h"); n != 0 {
		t.Fatalf("a new rule replayed %d events of the history", n)
	}
	stop()

	if err := s.JS.DeleteConsumer(ctx, "BRIDGE_EVENTS", ConsumerName("c1")); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		publishEvent(t, s.JS, fmt.Sprintf("n%d", i)) // while no consumer exists
	}
	defer run()()
	testutil.Eventually(t, 20*time.Second, func() bool { n, _ := sentCount("n"); return n == 5 }, "events stored meanwhile not dispatched")
	for _, p := range []string{"e", "n"} {
		if n, total := sentCount(p); total != n {
			t.Fatalf("%s*: %d work requests for %d events", p, total, n)
		}
	}
	if n, _ := sentCount("h"); n != 0 {
		t.Fatalf("the recreated consumer replayed %d events of the history", n)
	}
	// The last work request's reply command runs a moment after it was sent.
	testutil.Eventually(t, 10*time.Second, func() bool {
		doer.mu.Lock()
		defer doer.mu.Unlock()
		return len(doer.n) >= 35
	}, "reply commands not all run")
	doer.mu.Lock()
	defer doer.mu.Unlock()
	for id, n := range doer.n {
		if n != 1 {
			t.Fatalf("reply command %s ran %d times", id, n)
		}
	}
	if len(doer.n) != 35 {
		t.Fatalf("%d reply commands ran, want 35", len(doer.n))
	}
}
