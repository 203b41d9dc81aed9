package bridge

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bridgeworks/bridge/internal/testutil"
)

// TestRunnerRunsOnceAtATimeAndLosesNoWake: wake-ups from several
// goroutines at any moment, while the run works, parks or has parked,
// never start a second run beside the first and are never lost: the last
// run sees every item posted before its wake-up. After the run ends for
// good, wake-ups start nothing and the connection's count is released.
func TestRunnerRunsOnceAtATimeAndLosesNoWake(t *testing.T) {
	t.Parallel()
	var posted, seen, active atomic.Int64
	var finish, ended atomic.Bool
	var wg sync.WaitGroup
	r := newRunner(&wg, func() error {
		if active.Add(1) != 1 {
			t.Error("two runs at once")
		}
		defer active.Add(-1)
		for p := posted.Load(); seen.Load() < p; p = posted.Load() {
			seen.Store(p) // the run answers what was posted before it looked
			runtime.Gosched()
		}
		if finish.Load() {
			return nil
		}
		return errParked
	}, func() { ended.Store(true) })
	quiet := func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return !r.running && seen.Load() == posted.Load()
	}
	const wakers, each = 4, 3000
	var ww sync.WaitGroup
	for range wakers {
		ww.Go(func() {
			for i := range each {
				posted.Add(1)
				r.wake()
				if i%5 == 0 {
					runtime.Gosched()
				}
			}
		})
	}
	ww.Wait()
	testutil.Eventually(t, 10*time.Second, quiet, "wake-ups lost: %d of %d posted seen", seen.Load(), posted.Load())

	finish.Store(true)
	r.wake()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the connection's count not released after its run ended")
	}
	if !ended.Load() {
		t.Fatal("done not called")
	}
	r.wake()
	r.mu.Lock()
	again := !r.woken // the wake-up took the "running" branch: no goroutine started
	r.mu.Unlock()
	if again {
		t.Error("a wake-up after the end started the connection again")
	}
}

// TestConnCtlStop: a connection's stop cancels the phase under way and
// every later phase at once, and only the bridge's end or the stop ends a
// phase.
func TestConnCtlStop(t *testing.T) {
	t.Parallel()
	parent, cancelParent := context.WithCancel(context.Background())
	defer cancelParent()
	ctl := &connCtl{parent: parent}
	first, done := ctl.phase()
	done()
	if ctl.err() != nil {
		t.Fatal("a phase's end stopped the connection")
	}
	term, cancelTerm := ctl.phase()
	defer cancelTerm()
	if first.Err() == nil || term.Err() != nil {
		t.Fatalf("phases: ended %v, current %v", first.Err(), term.Err())
	}
	ctl.stop()
	if term.Err() == nil || ctl.err() == nil {
		t.Fatal("stop did not end the current phase")
	}
	later, cancelLater := ctl.phase()
	defer cancelLater()
	if later.Err() == nil {
		t.Fatal("a phase after the stop is not cancelled")
	}
	other := &connCtl{parent: parent}
	p, cancelP := other.phase()
	defer cancelP()
	cancelParent()
	if p.Err() == nil || other.err() == nil {
		t.Fatal("the bridge's end did not end the phase")
	}
}
