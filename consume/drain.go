package consume

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/bridgeworks/bridge/ackflow"
)

// hardCtx returns the handlers' hard context, made from ctx (Start's) on
// first use.
func (e *engine) hardCtx(ctx context.Context) context.Context {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.hard == nil {
		e.hard, e.cancelHard = context.WithCancel(context.WithoutCancel(ctx))
	}
	return e.hard
}

// stopHard cancels the hard context, if one was made.
func (e *engine) stopHard() {
	e.mu.Lock()
	cancel := e.cancelHard
	e.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// scheduler returns the engine's scheduler, made on first use; called on
// the fetch loop's goroutine only (drain reads it after the loop ended).
func (e *engine) scheduler() *scheduler {
	if e.sched == nil {
		e.sched = newScheduler(e.o.MaxParallel, e.o.MaxInFlightPerRoom, e.process)
	}
	return e.sched
}

// drain waits for running handlers up to DrainTimeout, then cancels what
// still runs, and hands every unsettled message back with NakWithDelay in
// stream order. All get the same delay, so they become due again in the
// order they were handed back: MinHandBack, or the longest retry wait cut
// short, capped at MaxHandBack so one room's long wait does not hold every
// room back after a restart.
func (e *engine) drain() {
	done := make(chan struct{})
	go func() { // owned: drain waits for done below
		e.sched.wait()
		close(done)
	}()
	t := time.NewTimer(e.o.DrainTimeout)
	select {
	case <-done:
	case <-t.C:
		e.logger().Warn().Int64("drain_timeout_ms", e.o.DrainTimeout.Milliseconds()).Msg("messages still in hand at the drain deadline; cancelling them")
		e.stopHard()
		<-done
	}
	t.Stop()
	left := append(e.sched.leftovers(), e.held...)
	e.held = nil
	if len(left) == 0 {
		return
	}
	slices.SortFunc(left, func(a, b *Msg) int { return cmp.Compare(a.Seq, b.Seq) })
	delay := e.o.MinHandBack
	for _, m := range left {
		delay = max(delay, min(m.RetryIn, e.o.MaxHandBack))
	}
	for _, m := range left {
		e.hb.Release(m.JS)
		e.done(m, false)
		if err := ackflow.Apply(m.JS, ackflow.Decision{Action: ackflow.ActionRetry, Delay: delay, Reason: "shutdown"}); err != nil {
			e.logger().Warn().Err(err).Str("subject", m.JS.Subject()).Msg("hand-back failed; redelivered after AckWait")
		}
		e.release(1)
	}
	// A round trip makes sure the server took the hand-backs before the
	// connection (or an embedded server) goes away; lost ones would wait
	// out the whole AckWait.
	if err := e.o.NC.FlushTimeout(2 * time.Second); err != nil {
		e.logger().Warn().Err(err).Msg("hand-backs not confirmed; they may wait out AckWait")
	}
	e.logger().Info().Int("handed_back", len(left)).Int64("delay_ms", delay.Milliseconds()).Msg("unfinished messages handed back")
}
