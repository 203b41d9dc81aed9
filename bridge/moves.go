package bridge

import (
	"context"
	"time"
)

// moveWatch is one connection running here, watched for a new assignment.
type moveWatch struct {
	stop func()
	to   string // where it moved; set once, with the handoff slot taken
}

// watchMove registers conn, running here, with the process's move check
// (see moves): when conn is assigned to another live process and this
// process's handoff slot is free, the slot is taken for conn and stop is
// called, once. unwatch ends the watch and returns the process conn moved
// to ("" if none); the caller then owns the slot.
func (c *cluster) watchMove(conn string, stop func()) (unwatch func() string) {
	w := &moveWatch{stop: stop}
	c.movesMu.Lock()
	c.watched[conn] = w
	c.movesMu.Unlock()
	c.changed() // look at once: the assignment may have moved already
	return func() string {
		c.movesMu.Lock()
		defer c.movesMu.Unlock()
		delete(c.watched, conn)
		return w.to
	}
}

// moves checks the watched connections whenever the cluster changes and
// every TTL/5, for the whole process, until ctx ends.
func (c *cluster) moves(ctx context.Context) {
	poll := max(c.ttl/5, 50*time.Millisecond)
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		w := c.woken()
		c.checkMoves()
		select {
		case <-ctx.Done():
			return
		case <-w:
		case <-t.C:
		}
	}
}

// checkMoves stops the first watched connection assigned elsewhere, if the
// handoff slot is free: one connection is handed over at a time.
func (c *cluster) checkMoves() {
	// One look at the assignment for the whole check (a map never changed
	// once made): every connection starting wakes this check, so looking
	// it up per connection made a start of n connections cost n².
	c.mu.Lock()
	assigned := c.assignmentLocked(c.liveLocked(time.Now()))
	c.mu.Unlock()
	c.movesMu.Lock()
	defer c.movesMu.Unlock()
	for conn, w := range c.watched {
		if w.to != "" {
			continue
		}
		to := assigned[conn]
		if to == "" || to == c.self.Instance {
			continue
		}
		select {
		case c.handoff <- struct{}{}:
			w.to = to
			w.stop()
		default:
			return // a handover is under way
		}
	}
}
