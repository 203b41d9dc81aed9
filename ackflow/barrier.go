package ackflow

import (
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Barrier keeps a room's order across a crash. A restarted consumer may find
// messages its predecessor left unsettled: they come back one by one as
// their ack timers run out, not in stream order. So the consumer holds every
// message it receives until the predecessor's are all back (or settled
// elsewhere), then runs the held ones in stream order.
//
// Barrier only counts; the caller keeps the held messages. The zero value
// (and nil) is an inactive barrier.
type Barrier struct {
	seq     uint64 // highest stream sequence delivered to the predecessor
	pending int    // its unsettled messages when this run started
	back    int    // how many of them have come back
	held    int    // messages held so far
	since   time.Time
	limit   time.Duration
}

// NewBarrier returns the barrier a consumer needs after its info at start,
// or nil when nothing was left pending. limit bounds the wait (a pending
// message deleted meanwhile never comes back); take a few AckWaits.
func NewBarrier(info *jetstream.ConsumerInfo, limit time.Duration) *Barrier {
	if info == nil || info.NumAckPending == 0 {
		return nil
	}
	return &Barrier{seq: info.Delivered.Stream, pending: info.NumAckPending, since: time.Now(), limit: limit}
}

// Active reports whether messages must still be held.
func (b *Barrier) Active() bool { return b != nil && b.seq > 0 }

// Seq is the stream sequence the barrier guards (for logs).
func (b *Barrier) Seq() uint64 { return b.seq }

// Pending is how many messages the predecessor left unsettled (for logs).
func (b *Barrier) Pending() int { return b.pending }

// Hold records one received message, with its stream sequence, as held.
func (b *Barrier) Hold(seq uint64) {
	b.held++
	if seq <= b.seq {
		b.back++
	}
}

// Lift reports whether the held messages may now run: every predecessor
// message is back, or all that is still pending is held here (the
// predecessor acked or handed back the rest), or the ack floor passed the
// barrier, or the time limit ran out (timedOut). info may be nil when the
// consumer could not be asked. A lifted barrier is inactive.
func (b *Barrier) Lift(info *jetstream.ConsumerInfo) (lift, timedOut bool) {
	switch {
	case !b.Active():
		return true, false
	case b.back >= b.pending:
	case info != nil && (info.AckFloor.Stream >= b.seq || info.NumAckPending <= b.held):
	case time.Since(b.since) > b.limit:
		timedOut = true
	default:
		return false, false
	}
	b.seq = 0
	return true, timedOut
}
