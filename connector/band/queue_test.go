package band

import (
	"context"
	"testing"
	"time"

	"github.com/bridgeworks/bridge/connector"
)

// TestQueueBoundedFIFO: the session's queue hands events over in the
// order they came, holds at most QueueSize (a sender then waits for a
// receive, or gives up when its context, the socket or the session ends),
// a waiting Receive is woken by the next event, and an empty queue keeps
// no array.
func TestQueueBoundedFIFO(t *testing.T) {
	t.Parallel()
	s := &session{c: &Connector{opts: &Options{QueueSize: 3}}, ended: make(chan struct{}), halt: make(chan struct{})}
	ctx := context.Background()
	for i := range 3 {
		if !s.emit(ctx, connector.Event{Key: itoa(i)}) {
			t.Fatalf("event %d refused", i)
		}
	}
	full, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if s.emit(full, connector.Event{Key: "late"}) {
		t.Fatal("a fourth event went into a queue of three")
	}
	sent := make(chan bool)
	go func() { sent <- s.emit(ctx, connector.Event{Key: "3"}) }()
	select {
	case <-sent:
		t.Fatal("a sender on a full queue did not wait")
	case <-time.After(20 * time.Millisecond):
	}
	for i := range 4 {
		ev, _, err := s.receive(ctx)
		if err != nil || ev.Key != itoa(i) {
			t.Fatalf("receive %d: %q, %v", i, ev.Key, err)
		}
		if i == 0 && !<-sent {
			t.Fatal("the waiting sender gave up")
		}
	}
	if s.q.items != nil || s.queued.Load() != 0 {
		t.Fatalf("empty queue keeps %d items (cap %d), counter %d", len(s.q.items), cap(s.q.items), s.queued.Load())
	}
	got := make(chan string)
	go func() {
		ev, _, _ := s.receive(ctx)
		got <- ev.Key
	}()
	time.Sleep(10 * time.Millisecond)
	s.emit(ctx, connector.Event{Key: "woken"})
	if k := <-got; k != "woken" {
		t.Fatalf("waiting receive got %q", k)
	}
	s.emit(ctx, connector.Event{Key: "before the end"})
	close(s.ended)
	if ev, _, err := s.receive(ctx); err != nil || ev.Key != "before the end" {
		t.Fatalf("an event queued before the end: %q, %v", ev.Key, err)
	}
	if _, _, err := s.receive(ctx); err == nil {
		t.Fatal("the end not reported")
	}
}

// TestFactorySharesOptions: the connectors of one Factory share one copy
// of their options while their settings agree, and one with its own
// heartbeat interval gets a copy of its own.
func TestFactorySharesOptions(t *testing.T) {
	t.Parallel()
	f := Factory(false, Options{})
	build := func(hb string) *Connector {
		cfg := ConfigFor("http://127.0.0.1:1", "agent", "key")
		if hb != "" {
			cfg.Settings["heartbeat_interval"] = hb
		}
		c, err := f.New(cfg, connector.Deps{})
		if err != nil {
			t.Fatal(err)
		}
		return c.(*Connector)
	}
	a, b, c := build(""), build(""), build("5s")
	if a.opts != b.opts {
		t.Fatal("two connectors with the same settings have two copies of their options")
	}
	if c.opts == a.opts || c.opts.HeartbeatInterval != 5*time.Second || a.opts.HeartbeatInterval != 30*time.Second {
		t.Fatalf("heartbeat intervals %s and %s, shared %v", a.opts.HeartbeatInterval, c.opts.HeartbeatInterval, c.opts == a.opts)
	}
}

// TestSeenSetBounded: the seen set starts empty with nothing made, keeps
// at most max ids, and forgets the first added first (a repeated id does
// not count again).
func TestSeenSetBounded(t *testing.T) {
	t.Parallel()
	s := newSeenSet(2)
	if s.has("a") || s.ids != nil {
		t.Fatal("a new set is not empty")
	}
	s.add("a")
	s.add("b")
	s.add("a") // already kept: nothing changes
	s.add("c") // forgets a, the first added
	if s.has("a") || !s.has("b") || !s.has("c") || len(s.ids) != 2 {
		t.Fatalf("a %v, b %v, c %v, %d kept", s.has("a"), s.has("b"), s.has("c"), len(s.ids))
	}
}
