package consume

import (
	"context"
	"sync"
)

// scheduler starts each room's messages in stream order, at most perRoom
// of one room at once and at most max in all. A room that wants a slot
// when none is free waits in a FIFO; a running goroutine gives its slot to
// the next waiting room after each message, so one busy room cannot starve
// the others. Every goroutine it starts belongs to its wait group.
type scheduler struct {
	max, perRoom int
	// proc settles one message and reports true, or reports false when
	// shutdown cut it short (only once stop has ended).
	proc func(stop, hard context.Context, m *Msg) bool

	mu      sync.Mutex
	rooms   map[string]*roomQueue // rooms with queued or running messages; made by the first add
	waiting []*roomQueue          // rooms owed a slot, FIFO
	active  int                   // running goroutines
	left    []*Msg                // cut short by shutdown
	wg      sync.WaitGroup
}

type roomQueue struct {
	key     string
	q       []*Msg // not started yet, ascending stream sequence
	running int    // goroutines working on this room
	waiting bool   // in scheduler.waiting
}

func newScheduler(limit, perRoom int, proc func(stop, hard context.Context, m *Msg) bool) *scheduler {
	return &scheduler{max: max(limit, 1), perRoom: max(perRoom, 1), proc: proc}
}

// add queues m behind its room's earlier messages. Once stop has ended
// nothing new starts: m goes straight to the leftovers.
func (s *scheduler) add(stop, hard context.Context, m *Msg) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if stop.Err() != nil {
		s.left = append(s.left, m)
		return
	}
	r := s.rooms[m.Room]
	if r == nil {
		r = &roomQueue{key: m.Room}
		if s.rooms == nil {
			s.rooms = map[string]*roomQueue{}
		}
		s.rooms[r.key] = r
	}
	r.insert(m)
	s.fillLocked(stop, hard, r)
}

// fillLocked starts r's next messages while it has any, fewer than
// perRoom run, and a slot is free; out of slots, r waits for one.
func (s *scheduler) fillLocked(stop, hard context.Context, r *roomQueue) {
	for len(r.q) > 0 && r.running < s.perRoom {
		if s.active >= s.max {
			if !r.waiting {
				r.waiting = true
				s.waiting = append(s.waiting, r)
			}
			return
		}
		m := r.pop()
		r.running++
		s.active++
		s.wg.Go(func() { s.runRoom(stop, hard, r, m) })
	}
}

// startWaitingLocked gives free slots to waiting rooms, oldest first.
func (s *scheduler) startWaitingLocked(stop, hard context.Context) {
	for stop.Err() == nil && s.active < s.max && len(s.waiting) > 0 {
		r := s.waiting[0]
		s.waiting[0] = nil
		s.waiting = s.waiting[1:]
		r.waiting = false
		s.fillLocked(stop, hard, r)
	}
}

// runRoom processes m, then r's next messages, until r has none, stop
// ends, or another room waits for the slot.
func (s *scheduler) runRoom(stop, hard context.Context, r *roomQueue, m *Msg) {
	for {
		if !s.proc(stop, hard, m) {
			// Only after stop ended: the room's later messages stay queued.
			s.mu.Lock()
			s.left = append(s.left, m)
			s.mu.Unlock()
		}
		s.mu.Lock()
		if len(r.q) == 0 || stop.Err() != nil || len(s.waiting) > 0 {
			r.running--
			s.active--
			switch {
			case len(r.q) > 0 && stop.Err() == nil && !r.waiting:
				r.waiting = true // hand the slot over; queue again behind the others
				s.waiting = append(s.waiting, r)
			case len(r.q) == 0 && r.running == 0 && !r.waiting:
				delete(s.rooms, r.key)
			}
			s.startWaitingLocked(stop, hard)
			s.mu.Unlock()
			return
		}
		m = r.pop()
		s.mu.Unlock()
	}
}

func (r *roomQueue) pop() *Msg {
	m := r.q[0]
	r.q[0] = nil
	r.q = r.q[1:]
	return m
}

// insert keeps q in stream order; messages nearly always arrive in order,
// so this is an append.
func (r *roomQueue) insert(m *Msg) {
	i := len(r.q)
	for i > 0 && r.q[i-1].Seq > m.Seq {
		i--
	}
	r.q = append(r.q, nil)
	copy(r.q[i+1:], r.q[i:])
	r.q[i] = m
}

// wait blocks until every goroutine has returned; at once on a nil
// scheduler (an engine that took no message).
func (s *scheduler) wait() {
	if s != nil {
		s.wg.Wait()
	}
}

// leftovers returns, after wait, every message not settled: cut short or
// still queued.
func (s *scheduler) leftovers() []*Msg {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.left
	for _, r := range s.rooms {
		out = append(out, r.q...)
	}
	s.left, s.waiting = nil, nil
	s.rooms = nil
	return out
}
