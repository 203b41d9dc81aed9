package consume

import (
	"context"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bridgeworks/bridge/ackflow"
	"github.com/bridgeworks/bridge/internal/testutil"
	"github.com/bridgeworks/bridge/internal/tick"
	"github.com/bridgeworks/bridge/natsbus"
)

// runMux runs a Mux until the test ends (after the engines it serves).
func runMux(t *testing.T) *natsbus.Mux {
	t.Helper()
	mux := natsbus.NewMux(0)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { mux.Run(ctx) })
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	return mux
}

// runEngine runs the engine until the test ends.
func runEngine(t *testing.T, o Options, h Handler) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, o, h) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
}

// fetchLoops counts the goroutines running an engine's fetch loop or a
// pull of nats.go's jetstream.
func fetchLoops() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	c := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "consume.(*engine).fetchLoop") || strings.Contains(g, "jetstream.(*pullConsumer)") {
			c++
		}
	}
	return c
}

// parked says whether consumer C has no pull open on the server.
func parked(t *testing.T, js jetstream.JetStream) bool {
	ctx := testutil.Context(t, 5*time.Second)
	c, err := js.Consumer(ctx, "S", "C")
	if err != nil {
		return false
	}
	info, err := c.Info(ctx)
	return err == nil && info.NumWaiting == 0
}

// TestIdleEngineParks: with a doorbell, an idle engine holds no fetch
// goroutine and no pull on the server, and a message published later is
// handled at once (the safety timer is an hour: only the doorbell can wake
// it). Not parallel: it counts the process's fetch loops.
func TestIdleEngineParks(t *testing.T) {
	ns := testutil.NATS(t)
	stream(t, ns.JS, 2, 3)
	o := baseOptions(ns.JS, ns.NC)
	o.Doorbell, o.Mux, o.IdleWake = []string{"t.>"}, runMux(t), time.Hour
	var handled atomic.Int32
	runEngine(t, o, func(stop, hard context.Context, m *Msg) (ackflow.Decision, bool) {
		handled.Add(1)
		return ackflow.Decision{Action: ackflow.ActionAck}, true
	})
	testutil.Eventually(t, 10*time.Second, func() bool { return handled.Load() == 6 }, "stored messages handled at start: %d of 6", handled.Load())
	idle := func() bool { return fetchLoops() == 0 && parked(t, ns.JS) }
	testutil.Eventually(t, 10*time.Second, idle, "idle engine still pulls: %d fetch goroutines", fetchLoops())

	ctx := testutil.Context(t, 10*time.Second)
	if _, err := ns.JS.Publish(ctx, "t.r1", []byte("r1:3")); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return handled.Load() == 7 }, "command published while parked not handled")
	testutil.Eventually(t, 10*time.Second, idle, "engine did not park again: %d fetch goroutines", fetchLoops())
}

// TestRingWhileParkingIsNotLost: a ring that comes after an empty pull,
// while the loop decides to park, is answered by another pull, round
// after round; so are rings from several goroutines at any moment.
func TestRingWhileParkingIsNotLost(t *testing.T) {
	t.Parallel()
	var rings, seen atomic.Int64
	var pause atomic.Bool                // the loop stops at its next park decision
	decision := make(chan chan struct{}) // it hands the test a channel to release it
	b := &bell{every: time.Hour}
	b.start = func() {
		for {
			b.pulling()
			// the "pull" answers every ring counted before it started
			r := rings.Load()
			for s := seen.Load(); s < r && !seen.CompareAndSwap(s, r); s = seen.Load() {
			}
			if pause.CompareAndSwap(true, false) {
				release := make(chan struct{})
				decision <- release
				<-release
			}
			if b.park(false) {
				return
			}
		}
	}
	b.safety = time.AfterFunc(time.Hour, b.safetyRing)
	defer b.stop()
	answered := func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return seen.Load() == rings.Load() && !b.running
	}
	for round := range 300 {
		pause.Store(true)
		rings.Add(1)
		b.ring() // starts the loop
		release := <-decision
		rings.Add(1)
		b.ring() // between its empty pull and park
		close(release)
		testutil.Eventually(t, 5*time.Second, answered, "round %d: ring during the park decision lost (%d of %d answered)", round, seen.Load(), rings.Load())
	}

	const ringers, each = 4, 5000
	var wg sync.WaitGroup
	for range ringers {
		wg.Go(func() {
			for i := range each {
				rings.Add(1)
				b.ring()
				if i%7 == 0 {
					runtime.Gosched()
				}
			}
		})
	}
	wg.Wait()
	testutil.Eventually(t, 10*time.Second, answered, "rings lost: the last pull followed %d of %d", seen.Load(), rings.Load())
}

// TestNakRedeliveredWhileIdle: a message handed back with NakWithDelay
// comes back once due although the engine parked meanwhile and nothing
// else wakes it.
func TestNakRedeliveredWhileIdle(t *testing.T) {
	t.Parallel()
	ns := testutil.NATS(t)
	stream(t, ns.JS, 1, 1)
	o := baseOptions(ns.JS, ns.NC)
	o.Doorbell, o.Mux, o.IdleWake = []string{"t.>"}, runMux(t), time.Hour
	var handled atomic.Int32
	runEngine(t, o, func(stop, hard context.Context, m *Msg) (ackflow.Decision, bool) {
		if handled.Add(1) == 1 {
			return ackflow.Decision{Action: ackflow.ActionRetry, Delay: 3 * time.Second, Reason: "test"}, true
		}
		return ackflow.Decision{Action: ackflow.ActionAck}, true
	})
	testutil.Eventually(t, 10*time.Second, func() bool { return handled.Load() == 1 && parked(t, ns.JS) },
		"engine did not park after the nak (handled %d)", handled.Load())
	testutil.Eventually(t, 10*time.Second, func() bool { return handled.Load() == 2 }, "nak'd message not redelivered while idle")
}

// TestReconnectWakesParkedEngine: a reconnect (Mux.Reconnected) wakes a
// parked engine, for messages whose ring it may have missed while NATS was
// away. The doorbell here hears nothing, so only the reconnect can wake it.
func TestReconnectWakesParkedEngine(t *testing.T) {
	t.Parallel()
	ns := testutil.NATS(t)
	stream(t, ns.JS, 1, 1)
	o := baseOptions(ns.JS, ns.NC)
	mux := runMux(t)
	o.Doorbell, o.Mux, o.IdleWake = []string{"nothing.here"}, mux, time.Hour
	var handled atomic.Int32
	runEngine(t, o, func(stop, hard context.Context, m *Msg) (ackflow.Decision, bool) {
		handled.Add(1)
		return ackflow.Decision{Action: ackflow.ActionAck}, true
	})
	testutil.Eventually(t, 10*time.Second, func() bool { return handled.Load() == 1 && parked(t, ns.JS) }, "engine did not park")
	ctx := testutil.Context(t, 10*time.Second)
	if _, err := ns.JS.Publish(ctx, "t.r0", []byte("r0:1")); err != nil {
		t.Fatal(err)
	}
	mux.Reconnected()
	testutil.Eventually(t, 5*time.Second, func() bool { return handled.Load() == 2 }, "reconnect did not wake the parked engine")
}

// TestIdleWheelWakesParkedEngine: with Options.IdleWheel the safety
// wake-up is the wheel's: a parked engine whose doorbell hears nothing
// finds a stored message within about one of the wheel's periods, and a
// drained engine leaves the wheel.
func TestIdleWheelWakesParkedEngine(t *testing.T) {
	t.Parallel()
	ns := testutil.NATS(t)
	stream(t, ns.JS, 1, 1)
	o := baseOptions(ns.JS, ns.NC)
	wheel := tick.New(time.Second)
	o.Doorbell, o.Mux, o.IdleWake, o.IdleWheel = []string{"nothing.here"}, runMux(t), time.Hour, wheel
	var handled atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	en, err := Start(ctx, o, func(stop, hard context.Context, m *Msg) (ackflow.Decision, bool) {
		handled.Add(1)
		return ackflow.Decision{Action: ackflow.ActionAck}, true
	})
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return handled.Load() == 1 && parked(t, ns.JS) }, "engine did not park")
	pctx := testutil.Context(t, 10*time.Second)
	if _, err := ns.JS.Publish(pctx, "t.r0", []byte("r0:1")); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 3*time.Second, func() bool { return handled.Load() == 2 }, "the wheel did not wake the parked engine")
	cancel()
	en.Drain()
	if en.e.bell.idle.Stop() {
		t.Fatal("a drained engine is still on the wheel")
	}
}

// TestIdleWheelTickAllWakesParkedEngine: an engine on an IdleWheel is
// woken after a NATS reconnect by its owner's TickAll (not the Mux's
// Reconnected, which it does not register with).
func TestIdleWheelTickAllWakesParkedEngine(t *testing.T) {
	t.Parallel()
	ns := testutil.NATS(t)
	stream(t, ns.JS, 1, 1)
	o := baseOptions(ns.JS, ns.NC)
	mux := runMux(t)
	wheel := tick.New(time.Hour)
	o.Doorbell, o.Mux, o.IdleWheel = []string{"nothing.here"}, mux, wheel
	var handled atomic.Int32
	runEngine(t, o, func(stop, hard context.Context, m *Msg) (ackflow.Decision, bool) {
		handled.Add(1)
		return ackflow.Decision{Action: ackflow.ActionAck}, true
	})
	testutil.Eventually(t, 10*time.Second, func() bool { return handled.Load() == 1 && parked(t, ns.JS) }, "engine did not park")
	ctx := testutil.Context(t, 10*time.Second)
	if _, err := ns.JS.Publish(ctx, "t.r0", []byte("r0:1")); err != nil {
		t.Fatal(err)
	}
	mux.Reconnected() // registered nothing: wakes nobody
	time.Sleep(200 * time.Millisecond)
	if handled.Load() != 1 {
		t.Fatal("an engine on the wheel registered with the Mux's reconnects")
	}
	wheel.TickAll()
	testutil.Eventually(t, 5*time.Second, func() bool { return handled.Load() == 2 }, "TickAll did not wake the parked engine")
}

// engineGoroutines counts the goroutines with a frame of this package in
// their stack (the test's own are not: they wait in testutil or the test).
func engineGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	c := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "bridge/consume.") && !strings.Contains(g, "consume.Test") && !strings.Contains(g, "consume.runMux") {
			c++
		}
	}
	return c
}

// TestStartedEngineHoldsNoGoroutine: Start returns at once; once its
// consumer is set up and its stored messages handled, an engine with a
// doorbell and a shared heartbeat holds no goroutine at all. After its
// context ends, Drain lets a running handler finish within DrainTimeout
// and hands the message it could not finish back, in time for a second
// engine to get it. Not parallel: it counts the package's goroutines.
func TestStartedEngineHoldsNoGoroutine(t *testing.T) {
	ns := testutil.NATS(t)
	stream(t, ns.JS, 2, 2)
	hb := ackflow.NewHeartbeat(100 * time.Millisecond)
	beat, stopBeat := context.WithCancel(context.Background())
	var bg sync.WaitGroup
	bg.Go(func() { hb.Run(beat) })
	defer func() { stopBeat(); bg.Wait() }()
	o := baseOptions(ns.JS, ns.NC)
	o.Doorbell, o.Mux, o.IdleWake, o.Heartbeat = []string{"t.>"}, runMux(t), time.Hour, hb
	o.DrainTimeout = 200 * time.Millisecond

	var handled atomic.Int32
	started := make(chan string, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	en, err := Start(ctx, o, func(stop, hard context.Context, m *Msg) (ackflow.Decision, bool) {
		if string(m.JS.Data()) == "r0:9" {
			started <- "r0:9"
			<-hard.Done() // a call the drain has to cut short
			return ackflow.Decision{}, false
		}
		handled.Add(1)
		return ackflow.Decision{Action: ackflow.ActionAck}, true
	})
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return handled.Load() == 4 }, "stored messages handled: %d of 4", handled.Load())
	testutil.Eventually(t, 10*time.Second, func() bool { return engineGoroutines() == 0 },
		"an idle started engine holds %d goroutines", engineGoroutines())

	if _, err := ns.JS.Publish(testutil.Context(t, 5*time.Second), "t.r0", []byte("r0:9")); err != nil {
		t.Fatal(err)
	}
	<-started
	cancel()
	en.Drain()
	if n := engineGoroutines(); n != 0 {
		t.Errorf("%d goroutines of the engine left after Drain", n)
	}

	// The handed-back message comes to the next engine on the consumer.
	got := make(chan uint64, 1)
	ctx2, cancel2 := context.WithCancel(context.Background())
	en2, err := Start(ctx2, o, func(stop, hard context.Context, m *Msg) (ackflow.Decision, bool) {
		got <- m.Delivered
		return ackflow.Decision{Action: ackflow.ActionAck}, true
	})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-got:
		if d != 2 {
			t.Errorf("handed-back message delivered %d times, want 2", d)
		}
	case <-time.After(10 * time.Second):
		t.Error("handed-back message not redelivered")
	}
	cancel2()
	en2.Drain()
}
