package band

import (
	"container/list"
	"sync"
)

// seenSet remembers the most recent ids stored in JetStream, so that a
// message pushed again or found again by catch-up is not republished. It is
// bounded: the oldest ids are forgotten first (JetStream's duplicate window
// still catches those).
//
// Its list is kept by value and its map made by the first id: a connector
// that has seen nothing keeps one 80-byte object, not three (160 bytes).
type seenSet struct {
	mu    sync.Mutex
	max   int
	order list.List
	ids   map[string]*list.Element
}

func newSeenSet(max int) *seenSet {
	return &seenSet{max: max}
}

func (s *seenSet) add(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.ids[id]; ok {
		s.order.MoveToBack(e)
		return
	}
	if s.ids == nil {
		s.ids = map[string]*list.Element{}
	}
	s.ids[id] = s.order.PushBack(id)
	for s.order.Len() > s.max {
		front := s.order.Front()
		delete(s.ids, front.Value.(string))
		s.order.Remove(front)
	}
}

func (s *seenSet) has(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.ids[id]
	return ok
}
