package ackflow

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bridgeworks/bridge/connector"
)

// Action is what to do with a message after an attempt.
type Action int

// The actions, one per JetStream acknowledgement verb.
const (
	ActionAck        Action = iota // done: Ack
	ActionRetry                    // try again after Decision.Delay: NakWithDelay or an in-process wait
	ActionTerm                     // give up for good: TermWithReason (dead-letter first)
	ActionInProgress               // still working: InProgress, which restarts the AckWait timer
)

func (a Action) String() string {
	switch a {
	case ActionAck:
		return "ack"
	case ActionRetry:
		return "retry"
	case ActionTerm:
		return "term"
	case ActionInProgress:
		return "in_progress"
	}
	return fmt.Sprintf("action(%d)", int(a))
}

// Decision is the outcome of [Decide]. Delay is set for ActionRetry only.
// Reason names the error class ("bad request", "permanent error",
// "transient error", "retries exhausted"); it never carries the error text,
// so it is safe to log. PlatformWait is the wait the platform asked for
// (its Retry-After), set for ActionRetry; a Delay shorter than it means the
// policy's caps cut it, which callers log.
type Decision struct {
	Action       Action
	Delay        time.Duration
	Reason       string
	PlatformWait time.Duration
}

// Reasons [Decide] gives.
const (
	ReasonBadRequest = "bad request"
	ReasonPermanent  = "permanent error"
	ReasonTransient  = "transient error"
	ReasonExhausted  = "retries exhausted"
)

// Policy bounds retries. Zero fields take the defaults of [DefaultPolicy].
type Policy struct {
	// MaxAttempts is the total number of attempts, the first included;
	// default 8.
	MaxAttempts int
	// BackoffInitial is the wait after the first failed attempt; it doubles
	// after each further one up to BackoffMax. Defaults 200ms and 30s.
	// BackoffMax caps every wait between attempts, a platform's Retry-After
	// included.
	BackoffInitial, BackoffMax time.Duration
	// RetryAfterMax caps the platform's Retry-After; default
	// [connector.DefaultRetryAfterMax]. The wait is the smaller of the two
	// caps.
	RetryAfterMax time.Duration
	// Jitter spreads a computed wait; nil means [EqualJitter]. Use
	// [NoJitter] for reproducible tables.
	Jitter func(time.Duration) time.Duration
}

// DefaultPolicy is 8 attempts, 200ms doubling to 30s, with equal jitter.
func DefaultPolicy() Policy {
	return Policy{MaxAttempts: 8, BackoffInitial: 200 * time.Millisecond, BackoffMax: 30 * time.Second, Jitter: EqualJitter}
}

// WithDefaults returns p with its zero fields filled from [DefaultPolicy].
func (p Policy) WithDefaults() Policy {
	d := DefaultPolicy()
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = d.MaxAttempts
	}
	if p.BackoffInitial <= 0 {
		p.BackoffInitial = d.BackoffInitial
	}
	if p.BackoffMax <= 0 {
		p.BackoffMax = d.BackoffMax
	}
	if p.BackoffMax < p.BackoffInitial {
		p.BackoffMax = p.BackoffInitial
	}
	if p.Jitter == nil {
		p.Jitter = d.Jitter
	}
	if p.RetryAfterMax <= 0 {
		p.RetryAfterMax = connector.DefaultRetryAfterMax
	}
	return p
}

// Backoff is the wait after failed attempt number attempt (1 for the first):
// BackoffInitial doubled attempt-1 times, capped at BackoffMax, then jittered.
func (p Policy) Backoff(attempt int) time.Duration {
	p = p.WithDefaults()
	d := p.BackoffMax
	if n := attempt - 1; n < 32 {
		if x := p.BackoffInitial << max(n, 0); x > 0 && x < p.BackoffMax {
			d = x
		}
	}
	return max(p.Jitter(d), 0)
}

// EqualJitter returns a wait drawn uniformly from [d/2, d]: spread enough to
// break up retry storms, never much shorter than asked.
func EqualJitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2+1)
}

// NoJitter returns d unchanged.
func NoJitter(d time.Duration) time.Duration { return d }

// Decide says what to do after attempt number attempt (1 for the first; use
// Metadata().NumDelivered when redelivery does the retrying) ended with err:
//
//   - nil: ActionAck.
//   - a bad request or another permanent error ([connector.IsPermanent]:
//     4xx other than 408/425/429, [connector.Permanent]): ActionTerm, at once.
//   - a transient error with attempts left: ActionRetry after the policy's
//     capped exponential backoff with jitter, or after the platform's
//     Retry-After ([connector.RetryAfter]) when that is longer; never
//     longer than BackoffMax nor RetryAfterMax. An in-process wait so stays
//     bounded by the policy whatever the platform sends: a platform asking
//     for longer gets an early retry (which, refused again, uses an
//     attempt), not a stalled room.
//   - a transient error on the last attempt: ActionTerm, "retries exhausted".
func Decide(err error, attempt int, p Policy) Decision {
	if err == nil {
		return Decision{Action: ActionAck}
	}
	var rq *connector.RequestError
	if errors.As(err, &rq) {
		return Decision{Action: ActionTerm, Reason: ReasonBadRequest}
	}
	if connector.IsPermanent(err) {
		return Decision{Action: ActionTerm, Reason: ReasonPermanent}
	}
	p = p.WithDefaults()
	if attempt >= p.MaxAttempts {
		return Decision{Action: ActionTerm, Reason: ReasonExhausted}
	}
	asked := connector.RetryAfter(err)
	wait, _ := connector.CapWait(asked, p.RetryAfterMax)
	d := min(max(p.Backoff(attempt), wait), p.BackoffMax)
	return Decision{Action: ActionRetry, Delay: d, Reason: ReasonTransient, PlatformWait: asked}
}

// Apply settles m as d says: Ack, NakWithDelay(d.Delay) (at least 1ms, so
// never a bare Nak and its hot redelivery), TermWithReason(d.Reason) or
// InProgress.
func Apply(m jetstream.Msg, d Decision) error {
	switch d.Action {
	case ActionAck:
		return m.Ack()
	case ActionRetry:
		return m.NakWithDelay(max(d.Delay, time.Millisecond))
	case ActionTerm:
		r := d.Reason
		if r == "" {
			r = ReasonPermanent
		}
		return m.TermWithReason(r)
	case ActionInProgress:
		return m.InProgress()
	}
	return fmt.Errorf("ackflow: unknown action %v", d.Action)
}
