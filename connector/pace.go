package connector

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"golang.org/x/sync/semaphore"
	"golang.org/x/time/rate"
)

// DialLimiter paces the sockets every connection of a process opens: a
// token bucket (rate per second, burst) shared by all of them, so a start
// or a restart with thousands of connections never dials them all in the
// same second. Each Wait first sleeps a random fraction of one token's
// interval (jitter, so connections started together do not line up), then
// takes a token, then checks the dials it let through in the last second:
// tokens are handed out at the rate, but a busy process wakes their
// waiters late and together, so Wait also holds a dial while rate + burst
// were let through in the second before it. No one-second window sees more
// than rate + burst dials start. A nil *DialLimiter does not limit.
type DialLimiter struct {
	lim   *rate.Limiter
	every time.Duration

	mu     sync.Mutex
	recent []time.Time // the last len(recent) dials let through, a ring; oldest at next
	next   int
}

// NewDialLimiter returns a limiter of perSecond dials with the given
// burst; nil (no limit) when perSecond is not positive.
func NewDialLimiter(perSecond float64, burst int) *DialLimiter {
	if !(perSecond > 0) {
		return nil
	}
	burst = max(burst, 1)
	window := int(min(perSecond, maxDialWindow)) + burst
	return &DialLimiter{lim: rate.NewLimiter(rate.Limit(perSecond), burst),
		every: time.Duration(float64(time.Second) / perSecond), recent: make([]time.Time, window)}
}

// maxDialWindow caps the dials a DialLimiter remembers (its rate, past it,
// is kept by the token bucket alone).
const maxDialWindow = 100000

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
	if err := d.lim.Wait(ctx); err != nil {
		return err
	}
	for {
		d.mu.Lock()
		now := time.Now()
		oldest := d.recent[d.next]
		if oldest.IsZero() || now.Sub(oldest) >= time.Second {
			d.recent[d.next] = now
			d.next = (d.next + 1) % len(d.recent)
			d.mu.Unlock()
			return nil
		}
		wait := time.Second - now.Sub(oldest)
		d.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
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
