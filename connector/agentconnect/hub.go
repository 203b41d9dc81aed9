package agentconnect

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/bridgeworks/bridge/connector"
)

// hub is one connected run (Connect to Close): one socket per open
// session and the queue of events for Receive.
//
// One socket per session: every socket of a session gets every broadcast,
// so two would publish each frame twice (the stream would drop the second
// copy, since FrameKey is the same on both, but the work is doubled and a
// pending send could be answered twice). Within a process, hub.socks is
// the only place sockets are opened, attach is idempotent under the
// connector's mutex, and a session's socket redials itself instead of
// being replaced. Across replicas, the bridge's lease runs a connection,
// with all its sessions, on one replica at a time.
type hub struct {
	c      *Connector
	out    chan connector.Event
	ctx    context.Context // ended by stop
	cancel context.CancelFunc
	wg     sync.WaitGroup
	socks  map[string]*sock // guarded by c.mu
}

func newHub(c *Connector) *hub {
	ctx, cancel := context.WithCancel(context.Background())
	return &hub{c: c, out: make(chan connector.Event, c.st.QueueSize), ctx: ctx, cancel: cancel, socks: map[string]*sock{}}
}

// attach opens r's socket unless it has one; call with c.mu held.
func (h *hub) attach(r sessionRec) {
	if _, ok := h.socks[r.ID]; ok || h.ctx.Err() != nil {
		return
	}
	s := newSock(h, r)
	s.fresh = h.c.fresh[r.ID]
	h.socks[r.ID] = s
	h.wg.Go(s.run)
}

// detach closes a session's socket after grace (0: now).
func (h *hub) detach(id string, grace time.Duration) {
	h.c.mu.Lock()
	s := h.socks[id]
	h.c.mu.Unlock()
	if s != nil {
		s.finish(grace)
	}
}

// gone is called by a socket's run as it returns.
func (h *hub) gone(s *sock) {
	h.c.mu.Lock()
	defer h.c.mu.Unlock()
	if h.socks[s.rec.ID] == s {
		delete(h.socks, s.rec.ID)
	}
}

// stop ends every socket and waits for them.
func (h *hub) stop(ctx context.Context) error {
	h.cancel()
	done := make(chan struct{})
	go func() { // owned: ends when wg does
		h.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("agentconnect: close: %w", ctx.Err())
	}
}

// emit hands one event to Receive, waiting while the queue is full; it
// reports false when the hub stopped first.
func (h *hub) emit(ev connector.Event) bool {
	select {
	case h.out <- ev:
		return true
	case <-h.ctx.Done():
		return false
	}
}
