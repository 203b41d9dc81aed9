package cmdexec

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// item is one durable command in hand.
type item struct {
	msg     jetstream.Msg
	seq     uint64    // stream sequence
	stored  time.Time // when the stream stored it
	room    string    // the subject's room token, as written: the ordering key
	retryIn time.Duration
}

// scheduler runs each room's items strictly in stream order and different
// rooms in parallel: one goroutine per room with queued items, at most max at
// once. Rooms beyond max wait in a FIFO; a running room hands its slot to the
// next waiting room after each item, so one busy room cannot starve others.
// A room's goroutine ends when its queue is empty (or on shutdown or a
// hand-over); the scheduler's wait group owns every one of them.
type scheduler struct {
	max int
	// proc settles one item and reports true, or reports false when
	// shutdown cut it short; it returns false only once stop has ended.
	proc func(stop, hard context.Context, it *item) bool

	mu      sync.Mutex
	rooms   map[string]*roomQueue // rooms with queued or running items
	waiting []*roomQueue          // rooms with items and no slot, FIFO
	active  int
	left    []*item // items cut short by shutdown
	wg      sync.WaitGroup
}

type roomQueue struct {
	key     string
	q       []*item // ascending stream sequence
	running bool
	waiting bool
	ran     int // items run since the room got its slot
}

func newScheduler(limit int, proc func(stop, hard context.Context, it *item) bool) *scheduler {
	return &scheduler{max: limit, proc: proc, rooms: map[string]*roomQueue{}}
}

// add queues it behind its room's earlier items. Once stop has ended nothing
// new starts: it goes straight to the leftovers.
func (s *scheduler) add(stop, hard context.Context, it *item) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if stop.Err() != nil {
		s.left = append(s.left, it)
		return
	}
	r := s.rooms[it.room]
	if r == nil {
		r = &roomQueue{key: it.room}
		s.rooms[it.room] = r
	}
	r.insert(it)
	if r.running || r.waiting {
		return
	}
	if s.active < s.max {
		s.startLocked(stop, hard, r)
		return
	}
	r.waiting = true
	s.waiting = append(s.waiting, r)
}

// insert keeps q in stream order; items nearly always arrive in order, so
// this is an append.
func (r *roomQueue) insert(it *item) {
	i := len(r.q)
	for i > 0 && r.q[i-1].seq > it.seq {
		i--
	}
	r.q = append(r.q, nil)
	copy(r.q[i+1:], r.q[i:])
	r.q[i] = it
}

func (s *scheduler) startLocked(stop, hard context.Context, r *roomQueue) {
	r.running, r.waiting, r.ran = true, false, 0
	s.active++
	s.wg.Go(func() { s.runRoom(stop, hard, r) })
}

// startWaitingLocked gives free slots to waiting rooms, oldest first.
func (s *scheduler) startWaitingLocked(stop, hard context.Context) {
	for stop.Err() == nil && s.active < s.max && len(s.waiting) > 0 {
		r := s.waiting[0]
		s.waiting[0] = nil
		s.waiting = s.waiting[1:]
		s.startLocked(stop, hard, r)
	}
}

func (s *scheduler) runRoom(stop, hard context.Context, r *roomQueue) {
	for {
		s.mu.Lock()
		switch {
		case len(r.q) == 0 || stop.Err() != nil:
			r.running = false
			if len(r.q) == 0 {
				delete(s.rooms, r.key)
			}
			s.active--
			s.startWaitingLocked(stop, hard)
			s.mu.Unlock()
			return
		case r.ran > 0 && len(s.waiting) > 0:
			// Hand the slot over; this room queues again behind the others.
			r.running, r.waiting = false, true
			s.waiting = append(s.waiting, r)
			s.active--
			s.startWaitingLocked(stop, hard)
			s.mu.Unlock()
			return
		}
		it := r.q[0]
		r.q[0] = nil
		r.q = r.q[1:]
		r.ran++
		s.mu.Unlock()
		if !s.proc(stop, hard, it) {
			// Only after stop ended: the next turn of the loop exits and
			// the room's later items stay queued behind this one.
			s.mu.Lock()
			s.left = append(s.left, it)
			s.mu.Unlock()
		}
	}
}

// wait blocks until every room goroutine has returned.
func (s *scheduler) wait() { s.wg.Wait() }

// leftovers returns, after wait, every item not settled: cut short or
// still queued.
func (s *scheduler) leftovers() []*item {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.left
	for _, r := range s.rooms {
		out = append(out, r.q...)
	}
	s.left, s.waiting = nil, nil
	s.rooms = map[string]*roomQueue{}
	return out
}
