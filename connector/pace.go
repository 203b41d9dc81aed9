package connector

import (
	"context"
	"math/rand/v2"
	"time"

	"golang.org/x/sync/semaphore"
	"golang.org/x/time/rate"
)

// DialLimiter paces the sockets every connection of a process opens: a
// token bucket (rate per second, burst) shared by all of them, so a start
// or a restart with thousands of connections never dials them all in the
// same second. Each Wait first sleeps a random fraction of one token's
// interval (jitter, so connections started together do not line up), then
// takes a token; a dial made right after Wait returns therefore keeps the
// bucket's bound: no one-second window sees more than rate + burst dials.
// A nil *DialLimiter does not limit.
type DialLimiter struct {
	lim   *rate.Limiter
	every time.Duration
}

// NewDialLimiter returns a limiter of perSecond dials with the given
// burst; nil (no limit) when perSecond is not positive.
func NewDialLimiter(perSecond float64, burst int) *DialLimiter {
	if !(perSecond > 0) {
		return nil
	}
	return &DialLimiter{lim: rate.NewLimiter(rate.Limit(perSecond), max(burst, 1)),
		every: time.Duration(float64(time.Second) / perSecond)}
}

// Wait blocks until the caller may dial once, or ctx ends.
func (d *DialLimiter) Wait(ctx context.Context) error {
	if d == nil {
		return nil
	}
	if d.every > 0 {
		t := time.NewTimer(rand.N(d.every) + 1)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
	return d.lim.Wait(ctx)
}

// Gate bounds work that runs at once across every connection of a process
// (catch-up reads). A nil *Gate does not bound.
type Gate struct{ sem *semaphore.Weighted }

// NewGate returns a gate letting n callers in at once; nil (no bound) when
// n is not positive.
func NewGate(n int) *Gate {
	if n <= 0 {
		return nil
	}
	return &Gate{sem: semaphore.NewWeighted(int64(n))}
}

// Enter waits for a place, or ctx's end; on success the caller must call
// Leave once.
func (g *Gate) Enter(ctx context.Context) error {
	if g == nil {
		return nil
	}
	return g.sem.Acquire(ctx, 1)
}

// Leave gives back the place Enter took.
func (g *Gate) Leave() {
	if g != nil {
		g.sem.Release(1)
	}
}
