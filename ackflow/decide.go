package ackflow

import (
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/retry"
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
// Reason names the error class (the Reason constants); it never carries
// the error text, so it is safe to log. PlatformWait is the wait the
// platform asked for (its Retry-After or cooldown); a Delay or Hold shorter
// than it means the policy's caps cut it, which callers log. Hold is set
// with ReasonHoldRoom: how long the room's next command waits.
type Decision struct {
	Action       Action
	Delay        time.Duration
	Reason       string
	PlatformWait time.Duration
	Hold         time.Duration
}

// Reasons [Decide] gives.
const (
	ReasonBadRequest = "bad request"
	ReasonPermanent  = "permanent error"
	ReasonTransient  = "transient error"
	ReasonExhausted  = "retries exhausted"
	// ReasonUnknownOutcome: the call may have reached the platform
	// ([connector.Sent]); it is never sent again.
	ReasonUnknownOutcome = "unknown outcome"
	// ReasonHoldRoom: the platform asked the room to rest
	// ([connector.HoldRoom]); Decision.Hold says how long.
	ReasonHoldRoom = "room held"
)

// Policy bounds retries. Zero fields take the defaults of [DefaultPolicy].
type Policy struct {
	// MaxAttempts is the total number of attempts, the first included;
	// default 8.
	MaxAttempts int
	// Retry shapes the wait between attempts: Initial after the first
	// failed attempt, doubling after each further one up to Max, jittered
	// ([retry.EqualJitter] unless told otherwise). Defaults 200ms and 30s.
	// Max caps every wait between attempts, a platform's Retry-After
	// included.
	Retry retry.Policy
	// RetryAfterMax caps the platform's Retry-After; default
	// [connector.DefaultRetryAfterMax]. The wait is the smaller of the two
	// caps.
	RetryAfterMax time.Duration
}

// DefaultPolicy is 8 attempts, 200ms doubling to 30s, with equal jitter.
func DefaultPolicy() Policy {
	return Policy{MaxAttempts: 8, Retry: retry.Policy{Initial: 200 * time.Millisecond, Max: 30 * time.Second, Jitter: retry.EqualJitter}}
}

// WithDefaults returns p with its zero fields filled from [DefaultPolicy].
func (p Policy) WithDefaults() Policy {
	d := DefaultPolicy()
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = d.MaxAttempts
	}
	if p.Retry.Initial <= 0 {
		p.Retry.Initial = d.Retry.Initial
	}
	if p.Retry.Max <= 0 {
		p.Retry.Max = d.Retry.Max
	}
	if p.Retry.Max < p.Retry.Initial {
		p.Retry.Max = p.Retry.Initial
	}
	if p.Retry.Jitter == nil {
		p.Retry.Jitter = d.Retry.Jitter
	}
	if p.RetryAfterMax <= 0 {
		p.RetryAfterMax = connector.DefaultRetryAfterMax
	}
	return p
}

// Backoff is the wait after failed attempt number attempt (1 for the first):
// [retry.Policy.Delay] with this policy's defaults.
func (p Policy) Backoff(attempt int) time.Duration {
	return p.WithDefaults().Retry.Delay(attempt)
}

// Decide says what to do after attempt number attempt (1 for the first; use
// Metadata().NumDelivered when redelivery does the retrying) ended with err:
//
//   - nil: ActionAck.
//   - a bad request or another permanent error ([connector.IsPermanent]:
//     4xx other than 408/425/429, [connector.Permanent]): ActionTerm, at once.
//   - a call that may have reached the platform ([connector.Sent]):
//     ActionTerm, "unknown outcome": sending it again could act twice.
//   - a cooldown ([connector.HoldRoom]): ActionTerm, "room held", with
//     Hold the wait the platform asked for (capped at RetryAfterMax): the
//     command ends, retryable by its sender, and the room's next command
//     waits Hold.
//   - a transient error with attempts left: ActionRetry after the policy's
//     capped exponential backoff with jitter, or after the platform's
//     Retry-After ([connector.RetryAfter], or [connector.BackOff]) when that
//     is longer; never longer than Retry.Max nor RetryAfterMax. An
//     in-process wait so stays bounded by the policy whatever the platform
//     sends: a platform asking for longer gets an early retry (which,
//     refused again, uses an attempt), not a stalled room.
//   - a transient error on the last attempt: ActionTerm, "retries exhausted".
func Decide(err error, attempt int, p Policy) Decision {
	if err == nil {
		return Decision{Action: ActionAck}
	}
	var rq *connector.RequestError
	if errors.As(err, &rq) {
		return Decision{Action: ActionTerm, Reason: ReasonBadRequest}
	}
	if connector.WasSent(err) {
		return Decision{Action: ActionTerm, Reason: ReasonUnknownOutcome}
	}
	if connector.IsPermanent(err) {
		return Decision{Action: ActionTerm, Reason: ReasonPermanent}
	}
	p = p.WithDefaults()
	if asked, ok := connector.RoomHold(err); ok {
		hold, _ := connector.CapWait(asked, p.RetryAfterMax)
		return Decision{Action: ActionTerm, Reason: ReasonHoldRoom, Hold: hold, PlatformWait: asked}
	}
	if attempt >= p.MaxAttempts {
		return Decision{Action: ActionTerm, Reason: ReasonExhausted}
	}
	asked := connector.RetryAfter(err)
	wait, _ := connector.CapWait(asked, p.RetryAfterMax)
	d := min(max(p.Backoff(attempt), wait), p.Retry.Max)
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
