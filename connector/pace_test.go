package connector

import (
	"context"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/bridgeworks/bridge/internal/testutil"
)

// Tokens let through together (their waiters woken late by a busy process)
// are held to the limiter's window: no one-second window sees more than
// rate + burst dials start. Here the bucket lets everything through and the
// window (5) alone bounds the dials.
func TestDialLimiterWindowHoldsBunchedTokens(t *testing.T) {
	t.Parallel()
	d := &DialLimiter{lim: rate.NewLimiter(rate.Inf, 1), recent: make([]time.Time, 5)}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	at := testutil.Finishes(t, 12, func() error { return d.Wait(ctx) })
	// Seen here a little after the limiter let each through: a window of
	// 0.9 s, not 1 s, keeps a late-seen first dial from counting against
	// the next second's.
	for i := range at {
		j := i
		for j < len(at) && at[j].Sub(at[i]) < 900*time.Millisecond {
			j++
		}
		if j-i > 5 {
			t.Fatalf("%d dials within one second from the %d-th, want at most 5", j-i, i+1)
		}
	}
	if len(at) == 12 && at[11].Sub(at[0]) < 2*time.Second {
		t.Fatalf("12 dials with a window of 5 a second took %v, want at least 2 s", at[11].Sub(at[0]))
	}
}
