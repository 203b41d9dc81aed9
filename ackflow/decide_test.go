package ackflow_test

import (
	"errors"
	"testing"
	"time"

	"github.com/bridgeworks/bridge/ackflow"
	"github.com/bridgeworks/bridge/connector"
)

func TestBackoffCapsAndNeverOverflows(t *testing.T) {
	t.Parallel()
	p := ackflow.Policy{BackoffInitial: 200 * time.Millisecond, BackoffMax: 30 * time.Second, Jitter: ackflow.NoJitter}
	want := map[int]time.Duration{0: 200 * time.Millisecond, 1: 200 * time.Millisecond, 2: 400 * time.Millisecond, 8: 25600 * time.Millisecond, 9: 30 * time.Second, 70: 30 * time.Second, 1 << 30: 30 * time.Second}
	for attempt, w := range want {
		if got := p.Backoff(attempt); got != w {
			t.Errorf("Backoff(%d) = %s, want %s", attempt, got, w)
		}
	}
}

func TestEqualJitterRange(t *testing.T) {
	t.Parallel()
	for range 1000 {
		if d := ackflow.EqualJitter(time.Second); d < 500*time.Millisecond || d > time.Second {
			t.Fatalf("EqualJitter(1s) = %s", d)
		}
	}
}

func TestDecideDefaultsAndRetryAfter(t *testing.T) {
	t.Parallel()
	// Zero policy: 8 attempts.
	err := errors.New("eof")
	if d := ackflow.Decide(err, 7, ackflow.Policy{}); d.Action != ackflow.ActionRetry || d.Delay < 100*time.Millisecond {
		t.Errorf("attempt 7: %+v", d)
	}
	if d := ackflow.Decide(err, 8, ackflow.Policy{}); d.Action != ackflow.ActionTerm || d.Reason != ackflow.ReasonExhausted {
		t.Errorf("attempt 8: %+v", d)
	}
	// Retry-After wins over jitter, up to BackoffMax.
	p := ackflow.Policy{BackoffInitial: time.Millisecond, BackoffMax: 2 * time.Minute}
	ra := &connector.PlatformError{Status: 429, RetryAfter: time.Minute}
	for range 100 {
		if d := ackflow.Decide(ra, 1, p); d.Delay != time.Minute || d.PlatformWait != time.Minute {
			t.Fatalf("Retry-After not honoured: %+v", d)
		}
	}
	// Wrapped errors keep their class.
	p.BackoffMax = 2 * time.Millisecond
	wrapped := errors.Join(errors.New("call"), &connector.PlatformError{Status: 404})
	if d := ackflow.Decide(wrapped, 1, p); d.Action != ackflow.ActionTerm {
		t.Errorf("wrapped 404: %+v", d)
	}
}

// TestDecideCapsRetryAfter: a platform's Retry-After never makes a command
// wait longer than BackoffMax (command_backoff_max) nor RetryAfterMax.
func TestDecideCapsRetryAfter(t *testing.T) {
	t.Parallel()
	huge := &connector.PlatformError{Status: 429, RetryAfter: connector.Seconds(1e9)}
	for _, c := range []struct {
		p    ackflow.Policy
		want time.Duration
	}{
		{ackflow.Policy{BackoffMax: 30 * time.Second, Jitter: ackflow.NoJitter}, 30 * time.Second},
		{ackflow.Policy{BackoffMax: time.Hour, RetryAfterMax: 2 * time.Minute, Jitter: ackflow.NoJitter}, 2 * time.Minute},
		{ackflow.Policy{BackoffMax: time.Hour, Jitter: ackflow.NoJitter}, connector.DefaultRetryAfterMax},
	} {
		d := ackflow.Decide(huge, 1, c.p)
		if d.Action != ackflow.ActionRetry || d.Delay != c.want || d.PlatformWait != huge.RetryAfter {
			t.Errorf("policy %+v: %+v, want a retry after %s", c.p, d, c.want)
		}
	}
}
