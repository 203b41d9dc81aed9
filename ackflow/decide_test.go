package ackflow_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/bridgeworks/bridge/ackflow"
	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/retry"
)

func TestBackoffCapsAndNeverOverflows(t *testing.T) {
	t.Parallel()
	p := ackflow.Policy{Retry: retry.Policy{Initial: 200 * time.Millisecond, Max: 30 * time.Second, Jitter: retry.NoJitter}}
	want := map[int]time.Duration{0: 200 * time.Millisecond, 1: 200 * time.Millisecond, 2: 400 * time.Millisecond, 8: 25600 * time.Millisecond, 9: 30 * time.Second, 70: 30 * time.Second, 1 << 30: 30 * time.Second}
	for attempt, w := range want {
		if got := p.Backoff(attempt); got != w {
			t.Errorf("Backoff(%d) = %s, want %s", attempt, got, w)
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
	p := ackflow.Policy{Retry: retry.Policy{Initial: time.Millisecond, Max: 2 * time.Minute}}
	ra := &connector.PlatformError{Status: 429, RetryAfter: time.Minute}
	for range 100 {
		if d := ackflow.Decide(ra, 1, p); d.Delay != time.Minute || d.PlatformWait != time.Minute {
			t.Fatalf("Retry-After not honoured: %+v", d)
		}
	}
	// Wrapped errors keep their class.
	p.Retry.Max = 2 * time.Millisecond
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
		{ackflow.Policy{Retry: retry.Policy{Max: 30 * time.Second, Jitter: retry.NoJitter}}, 30 * time.Second},
		{ackflow.Policy{Retry: retry.Policy{Max: time.Hour, Jitter: retry.NoJitter}, RetryAfterMax: 2 * time.Minute}, 2 * time.Minute},
		{ackflow.Policy{Retry: retry.Policy{Max: time.Hour, Jitter: retry.NoJitter}}, connector.DefaultRetryAfterMax},
	} {
		d := ackflow.Decide(huge, 1, c.p)
		if d.Action != ackflow.ActionRetry || d.Delay != c.want || d.PlatformWait != huge.RetryAfter {
			t.Errorf("policy %+v: %+v, want a retry after %s", c.p, d, c.want)
		}
	}
}

// TestDecideVocabulary: the errors of platforms that are not plain HTTP.
// BackOff waits at least what was asked (capped like a Retry-After, and by
// Retry.Max); HoldRoom ends the command and holds the room (capped by
// RetryAfterMax, not by Retry.Max: a cooldown is the platform's, not a
// retry wait); Sent is never retried, whatever it wraps and whatever the
// attempt.
func TestDecideVocabulary(t *testing.T) {
	t.Parallel()
	p := ackflow.Policy{MaxAttempts: 3, Retry: retry.Policy{Initial: time.Millisecond, Max: 10 * time.Second, Jitter: retry.NoJitter}, RetryAfterMax: time.Minute}
	transient := errors.New("stream reset")
	for _, c := range []struct {
		name    string
		err     error
		attempt int
		want    ackflow.Decision
	}{
		{"back off", connector.BackOff(transient, 2*time.Second), 1,
			ackflow.Decision{Action: ackflow.ActionRetry, Delay: 2 * time.Second, Reason: ackflow.ReasonTransient, PlatformWait: 2 * time.Second}},
		{"back off past Retry.Max", connector.BackOff(transient, 30*time.Second), 1,
			ackflow.Decision{Action: ackflow.ActionRetry, Delay: 10 * time.Second, Reason: ackflow.ReasonTransient, PlatformWait: 30 * time.Second}},
		{"back off, last attempt", connector.BackOff(transient, time.Second), 3,
			ackflow.Decision{Action: ackflow.ActionTerm, Reason: ackflow.ReasonExhausted}},
		{"hold room", connector.HoldRoom(transient, 20*time.Second), 1,
			ackflow.Decision{Action: ackflow.ActionTerm, Reason: ackflow.ReasonHoldRoom, Hold: 20 * time.Second, PlatformWait: 20 * time.Second}},
		{"hold room past RetryAfterMax", fmt.Errorf("call: %w", connector.HoldRoom(transient, time.Hour)), 1,
			ackflow.Decision{Action: ackflow.ActionTerm, Reason: ackflow.ReasonHoldRoom, Hold: time.Minute, PlatformWait: time.Hour}},
		{"hold room, last attempt", connector.HoldRoom(transient, time.Second), 3,
			ackflow.Decision{Action: ackflow.ActionTerm, Reason: ackflow.ReasonHoldRoom, Hold: time.Second, PlatformWait: time.Second}},
		{"sent", connector.Sent(transient), 1,
			ackflow.Decision{Action: ackflow.ActionTerm, Reason: ackflow.ReasonUnknownOutcome}},
		{"sent 503", fmt.Errorf("send: %w", connector.Sent(&connector.PlatformError{Status: 503})), 1,
			ackflow.Decision{Action: ackflow.ActionTerm, Reason: ackflow.ReasonUnknownOutcome}},
	} {
		if got := ackflow.Decide(c.err, c.attempt, p); got != c.want {
			t.Errorf("%s: %+v, want %+v", c.name, got, c.want)
		}
	}
}
