package retry

import (
	"context"
	"math/rand/v2"
	"time"
)

// Policy is capped exponential backoff with jitter. A zero Initial or Max
// takes the default in its comment.
type Policy struct {
	Initial time.Duration // the wait after the first failure, default 100ms
	Max     time.Duration // the cap before jitter, default 30s; raised to Initial if lower
	// Jitter spreads each computed wait; nil means EqualJitter. NoJitter
	// makes waits reproducible (tables, tests).
	Jitter func(time.Duration) time.Duration
}

func (p Policy) withDefaults() Policy {
	if p.Initial <= 0 {
		p.Initial = 100 * time.Millisecond
	}
	if p.Max <= 0 {
		p.Max = 30 * time.Second
	}
	if p.Max < p.Initial {
		p.Max = p.Initial
	}
	if p.Jitter == nil {
		p.Jitter = EqualJitter
	}
	return p
}

// Delay is the wait after failure number attempt (1 for the first):
// Initial doubled attempt-1 times, capped at Max, then jittered.
func (p Policy) Delay(attempt int) time.Duration {
	p = p.withDefaults()
	d := p.Max
	if n := attempt - 1; n < 40 {
		if x := p.Initial << max(n, 0); x > 0 && x < p.Max {
			d = x
		}
	}
	return max(p.Jitter(d), 0)
}

// Start returns a running backoff over p.
func (p Policy) Start() *Backoff { return &Backoff{p: p.withDefaults()} }

// Backoff counts consecutive failures of one loop. It is not safe for
// concurrent use: each loop keeps its own.
type Backoff struct {
	p Policy
	n int
}

// Next counts a failure and returns the wait before the next try.
func (b *Backoff) Next() time.Duration {
	b.n++
	return b.p.Delay(b.n)
}

// Reset forgets the failures after a success.
func (b *Backoff) Reset() { b.n = 0 }

// Failures is the number of failures since the last Reset.
func (b *Backoff) Failures() int { return b.n }

// EqualJitter returns a wait drawn uniformly from [d/2, d]: spread enough
// to break up retry storms, never much shorter than asked.
func EqualJitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2+1)
}

// NoJitter returns d unchanged.
func NoJitter(d time.Duration) time.Duration { return d }

// Sleep waits d, or returns false as soon as ctx ends.
func Sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
