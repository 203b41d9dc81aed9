package band

import "sync"

// seenSet remembers the most recent ids stored in JetStream, so that a
// message pushed again or found again by catch-up is not republished. It is
// bounded: the ids added first are forgotten first (JetStream's duplicate
// window still catches those). A ring of ids rather than a linked list: one
// string slot per id, no allocation per add once the ring is full. Its map
// is made by the first id: a connector that has seen nothing keeps one small
// object.
type seenSet struct {
	mu   sync.Mutex
	max  int
	ids  map[string]struct{}
	ring []string // the ids in the order added; grows up to max
	next int      // once the ring is full, the oldest id, replaced next
}

func newSeenSet(max int) *seenSet {
	return &seenSet{max: max}
}

func (s *seenSet) add(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.ids[id]; ok {
		return
	}
	if s.ids == nil {
		s.ids = map[string]struct{}{}
	}
	if len(s.ring) < s.max {
		s.ring = append(s.ring, id)
	} else {
		delete(s.ids, s.ring[s.next])
		s.ring[s.next] = id
		s.next = (s.next + 1) % s.max
	}
	s.ids[id] = struct{}{}
}

func (s *seenSet) has(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.ids[id]
	return ok
}
