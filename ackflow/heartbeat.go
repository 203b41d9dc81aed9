package ackflow

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Heartbeat keeps the messages a handler holds from being redelivered while
// they wait in a queue, for a retry, or on a slow call: [Heartbeat.Run] sends
// InProgress for each held message at a fixed interval. Hold a message on
// receipt and Release it before settling it: once Release returns no beat
// is sent for it, so a beat cannot land after a NakWithDelay and reset its
// delay. One goroutine (Run) serves any number of messages, of any number
// of consumers, so holding costs a map entry, not a timer: a process runs
// one Heartbeat for all its consumers whose AckWait is at least three
// intervals.
type Heartbeat struct {
	interval time.Duration
	mu       sync.Mutex
	held     map[jetstream.Msg]struct{}
}

// NewHeartbeat returns an empty Heartbeat beating every interval (at least
// 10ms). Pick interval well below the consumers' AckWait (a third is usual).
func NewHeartbeat(interval time.Duration) *Heartbeat {
	return &Heartbeat{interval: max(interval, 10*time.Millisecond), held: map[jetstream.Msg]struct{}{}}
}

// Interval is how often Run beats.
func (h *Heartbeat) Interval() time.Duration { return h.interval }

// Hold adds m to the messages kept alive.
func (h *Heartbeat) Hold(m jetstream.Msg) {
	h.mu.Lock()
	h.held[m] = struct{}{}
	h.mu.Unlock()
}

// Release stops keeping m alive.
func (h *Heartbeat) Release(m jetstream.Msg) {
	h.mu.Lock()
	delete(h.held, m)
	h.mu.Unlock()
}

// Len is the number of held messages.
func (h *Heartbeat) Len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.held)
}

// Run sends InProgress for every held message each interval until ctx
// ends. A failed InProgress is not fatal: the next beat tries again, and the worst
// case is a redelivery that idempotent handlers absorb.
func (h *Heartbeat) Run(ctx context.Context) {
	t := time.NewTicker(h.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// InProgress is a buffered publish, so holding the lock across the
		// beats is cheap, and it is what makes Release final.
		h.mu.Lock()
		for m := range h.held {
			_ = Apply(m, Decision{Action: ActionInProgress})
		}
		h.mu.Unlock()
	}
}
