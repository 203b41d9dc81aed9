package band

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/bridgeworks/bridge/connector"
)

// TestNotifyNeverMissesAnEvent: the Notifier side of a session. A callback
// armed on an empty queue is called by the next event, once; one armed
// while an event is queued is called at once; one armed after the end is
// called at once; and with events sent and callbacks armed from two
// goroutines at once, no event is left queued with a callback armed and
// not called.
func TestNotifyNeverMissesAnEvent(t *testing.T) {
	t.Parallel()
	newSess := func() *session {
		return &session{c: &Connector{opts: &Options{QueueSize: 64}}, ended: make(chan struct{}), halt: make(chan struct{})}
	}
	ctx := context.Background()
	ev := connector.Event{Name: "typing"}

	s := newSess()
	var calls atomic.Int32
	s.notifyOn(func() { calls.Add(1) })
	if calls.Load() != 0 {
		t.Fatal("called with nothing queued")
	}
	s.emit(ctx, ev)
	s.emit(ctx, ev)
	if calls.Load() != 1 {
		t.Fatalf("called %d times after two events, want 1", calls.Load())
	}
	s.notifyOn(func() { calls.Add(1) })
	if calls.Load() != 2 {
		t.Fatal("not called at once with events queued")
	}
	for range 2 {
		if _, _, ok, err := s.tryReceive(); !ok || err != nil {
			t.Fatalf("queued event not received: %v %v", ok, err)
		}
	}
	if _, _, ok, _ := s.tryReceive(); ok {
		t.Fatal("an empty queue handed something over")
	}
	close(s.ended)
	s.notifyOn(func() { calls.Add(1) })
	if calls.Load() != 3 {
		t.Fatal("not called at once after the end")
	}
	if _, _, ok, err := s.tryReceive(); !ok || err == nil {
		t.Fatal("the end not reported")
	}

	// Races: a consumer that parks (arms, then returns) whenever the queue
	// is empty, and a producer; every event must be received.
	const n = 20000
	s = newSess()
	var got atomic.Int32
	var wg sync.WaitGroup
	var consume func()
	var running atomic.Bool
	wake := func() {
		if running.CompareAndSwap(false, true) {
			wg.Go(consume)
		}
	}
	consume = func() {
		for {
			if _, _, ok, _ := s.tryReceive(); ok {
				got.Add(1)
				continue
			}
			running.Store(false)
			s.notifyOn(wake)
			return
		}
	}
	wake()
	wg.Go(func() {
		for range n {
			s.emit(ctx, ev)
		}
	})
	for got.Load() < n {
		wg.Wait() // the producer and the consumers started so far
		if got.Load() < n && !running.Load() && s.queued.Load() > 0 {
			t.Fatalf("%d of %d received; %d left queued with nobody woken", got.Load(), n, s.queued.Load())
		}
	}
}
