package ackflow

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

func TestBarrier(t *testing.T) {
	t.Parallel()
	if b := NewBarrier(&jetstream.ConsumerInfo{}, time.Minute); b.Active() {
		t.Fatal("active with nothing pending")
	}
	info := &jetstream.ConsumerInfo{NumAckPending: 2, Delivered: jetstream.SequenceInfo{Stream: 10}}
	b := NewBarrier(info, time.Minute)
	b.Hold(12) // newer: held, not back
	b.Hold(9)  // one of the predecessor's
	if lift, _ := b.Lift(&jetstream.ConsumerInfo{NumAckPending: 3, AckFloor: jetstream.SequenceInfo{Stream: 5}}); lift {
		t.Fatal("lifted with a predecessor message still out")
	}
	// The predecessor acked the other one: all still pending is held here.
	if lift, _ := b.Lift(&jetstream.ConsumerInfo{NumAckPending: 2, AckFloor: jetstream.SequenceInfo{Stream: 5}}); !lift || b.Active() {
		t.Fatal("not lifted once everything pending is held")
	}
	b = NewBarrier(info, time.Minute)
	b.Hold(3)
	b.Hold(7)
	if lift, timedOut := b.Lift(nil); !lift || timedOut {
		t.Fatal("not lifted once every predecessor message is back")
	}
	b = NewBarrier(info, 0)
	if lift, timedOut := b.Lift(nil); !lift || !timedOut {
		t.Fatal("time limit does not lift")
	}
}
