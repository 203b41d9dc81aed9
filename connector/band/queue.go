package band

import "sync"

// queue holds the events waiting for Receive, oldest first, at most
// Options.QueueSize of them. It is a slice, nil while empty, where a
// buffered channel of QueueSize pointers cost every idle session 0.6 KiB
// whether or not an event ever waited. A waiting sender (the queue full)
// or receiver (the queue empty) makes a channel that the other side
// closes once it took or put an item.
type queue struct {
	mu    sync.Mutex
	items []*item
	space chan struct{} // made by a sender waiting on a full queue; closed by the next take
	ready chan struct{} // made by a receiver waiting on an empty queue; closed by the next put
}

// put queues it, or returns a channel closed once there may be room.
func (q *queue) put(it *item, max int) (ok bool, space <-chan struct{}) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) >= max {
		if q.space == nil {
			q.space = make(chan struct{})
		}
		return false, q.space
	}
	q.items = append(q.items, it)
	if q.ready != nil {
		close(q.ready)
		q.ready = nil
	}
	return true, nil
}

// take returns the oldest item; when there is none, nil and a channel
// closed at the next put (nil unless wait).
func (q *queue) take(wait bool) (*item, <-chan struct{}) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) == 0 {
		if !wait {
			return nil, nil
		}
		if q.ready == nil {
			q.ready = make(chan struct{})
		}
		return nil, q.ready
	}
	it := q.items[0]
	q.items[0] = nil
	q.items = q.items[1:]
	if len(q.items) == 0 {
		q.items = nil // the array goes with the burst
	}
	if q.space != nil {
		close(q.space)
		q.space = nil
	}
	return it, nil
}
