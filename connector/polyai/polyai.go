package polyai

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/retry"
)

// Platform is the subject token of PolyAI.
const Platform = "polyai"

// defaultQueueSize bounds the events waiting for Receive, over all
// sessions. A full queue holds the sockets' readers back; nothing drops.
const defaultQueueSize = 256

// Connector holds the PolyAI sessions of one connection: one socket per
// session, many sessions per connector.
type Connector struct {
	cfg    connector.Config
	st     Settings
	log    zerolog.Logger
	http   *http.Client // REST
	dialer *http.Client // socket upgrades: no overall timeout
	state  connector.StateStore
	policy retry.Policy           // socket reconnects and session replacement
	dials  *connector.DialLimiter // shared by the process: paces every socket dial; nil: unpaced
	waits  connector.WaitBoard

	connMu   sync.Mutex // serialises Connect and Close
	mu       sync.Mutex // guards the fields below; never held across I/O
	run      *runState  // nil when not connected
	sessions map[string]*session
	replaced map[string]string   // old session id → its replacement
	ended    map[string]struct{} // sessions the platform ended (bounded like replaced)

	reconnects, missedHB, gapFilled atomic.Uint64
}

// Factory returns the registry entry of platform "polyai".
func Factory() connector.Factory {
	return connector.Factory{Platform: Platform, Secrets: []string{secretConnectorToken},
		Check: func(cfg connector.Config) error { _, err := settings(cfg); return err },
		New: func(cfg connector.Config, deps connector.Deps) (connector.Connector, error) {
			return New(cfg, deps)
		},
		CommandSchemas: CommandSchemas}
}

// New builds a connector; it does no I/O. Sessions already in deps.State
// are resumed at Connect.
func New(cfg connector.Config, deps connector.Deps) (*Connector, error) {
	st, err := settings(cfg)
	if err != nil {
		return nil, fmt.Errorf("polyai: %w", err)
	}
	if cfg.RetryAfterMax <= 0 {
		cfg.RetryAfterMax = connector.DefaultRetryAfterMax
	}
	hc := deps.HTTPClient
	if hc == nil {
		hc = connector.NewHTTPClient()
	}
	policy := cfg.Reconnect
	if policy.Initial <= 0 {
		policy.Initial = time.Second // PolyAI's advice: 1s doubling to 30s
	}
	if policy.Max <= 0 {
		policy.Max = 30 * time.Second
	}
	return &Connector{
		cfg: cfg, st: st, log: deps.Log, http: hc, state: deps.State, policy: policy, dials: deps.Dials,
		dialer:   &http.Client{Transport: hc.Transport, CheckRedirect: connector.SameOriginRedirects},
		sessions: map[string]*session{}, replaced: map[string]string{}, ended: map[string]struct{}{},
	}, nil
}

type item struct {
	ev  connector.Event
	ack connector.AckFunc
}

// runState is one Connect…Close: the queue to Receive and every
// goroutine of the sessions' sockets.
type runState struct {
	ctx    context.Context
	cancel context.CancelFunc
	out    chan item
	halt   chan struct{} // closed by Close: Receive ends, emits give up

	mu     sync.Mutex
	halted bool
	wg     sync.WaitGroup
}

// spawn runs fn on an owned goroutine unless the run is over.
func (rs *runState) spawn(fn func()) bool {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.halted {
		return false
	}
	rs.wg.Go(fn)
	return true
}

// emit hands one event to Receive, waiting while the queue is full.
func (rs *runState) emit(ev connector.Event, ack connector.AckFunc) bool {
	if ack == nil {
		ack = func(context.Context, error) {}
	}
	select {
	case rs.out <- item{ev, ack}:
		return true
	case <-rs.halt:
		return false
	}
}

// lifecycle emits a lifecycle event about one session.
func (rs *runState) lifecycle(ev connector.Event, data map[string]any) {
	ev.Data, _ = json.Marshal(data) // a map of plain values always encodes
	rs.emit(ev, nil)
}

// Connect resumes every session of the state store (or, without one,
// every session this connector held) from its cursor. Sockets open in
// the background; ctx bounds reading the state store.
func (c *Connector) Connect(ctx context.Context) error {
	c.connMu.Lock()
	defer c.connMu.Unlock()
	c.mu.Lock()
	busy := c.run != nil
	c.mu.Unlock()
	if busy {
		return errors.New("polyai: already connected")
	}
	if _, err := c.cfg.Secrets.Get(secretConnectorToken); err != nil {
		return connector.Permanent(fmt.Errorf("polyai: %w", err))
	}
	var stored map[string]record
	if c.state != nil {
		var err error
		if stored, err = c.loadRecords(ctx); err != nil {
			return err
		}
	}
	rctx, cancel := context.WithCancel(context.Background())
	rs := &runState{ctx: rctx, cancel: cancel, out: make(chan item, defaultQueueSize), halt: make(chan struct{})}
	c.mu.Lock()
	if stored != nil {
		for id, s := range c.sessions {
			if _, ok := stored[id]; !ok {
				delete(c.sessions, id) // ended or replaced by another process
				s.markGone(errSessionGone(id, ""))
			}
		}
		for id, rec := range stored {
			if s := c.sessions[id]; s != nil {
				s.mu.Lock()
				s.rec.Cursor = max(s.rec.Cursor, rec.Cursor)
				s.mu.Unlock()
				continue
			}
			ns := newSession(c, rec)
			ns.dirty = true // the stored record may say Open: rewritten before the next alive stamp
			c.sessions[id] = ns
		}
	}
	list := make([]*session, 0, len(c.sessions))
	for _, s := range c.sessions {
		list = append(list, s)
	}
	c.run = rs
	c.mu.Unlock()
	for _, s := range list {
		s.resetRun()
		rs.spawn(func() { s.loop(rs) })
	}
	if c.state != nil {
		rs.spawn(func() { c.flushLoop(rs) })
	}
	c.log.Info().Int("sessions", len(list)).Msg("polyai: resuming sessions")
	return nil
}

// Receive returns the next event of any session.
func (c *Connector) Receive(ctx context.Context) (connector.Event, connector.AckFunc, error) {
	c.mu.Lock()
	rs := c.run
	c.mu.Unlock()
	if rs == nil {
		return connector.Event{}, nil, connector.ErrNotConnected
	}
	it, err := connector.Next(ctx, rs.out, rs.halt)
	if err != nil {
		return connector.Event{}, nil, err
	}
	return it.ev, it.ack, nil
}

// Close closes every socket, waits for the sessions' goroutines and
// writes their cursors to the state store; the sessions stay open on
// PolyAI and the next Connect resumes them. It is idempotent.
func (c *Connector) Close(ctx context.Context) error {
	c.connMu.Lock()
	defer c.connMu.Unlock()
	c.mu.Lock()
	rs := c.run
	c.run = nil
	list := make([]*session, 0, len(c.sessions))
	for _, s := range c.sessions {
		list = append(list, s)
	}
	c.mu.Unlock()
	if rs == nil {
		return nil
	}
	rs.mu.Lock()
	rs.halted = true
	close(rs.halt)
	rs.mu.Unlock()
	rs.cancel()
	for _, s := range list {
		s.stopSocket()
	}
	done := make(chan struct{})
	go func() { // owned: ends when the sessions' goroutines do
		rs.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("polyai: close: %w", ctx.Err())
	}
	if c.state != nil {
		c.flush(ctx, true)
	}
	return nil
}

// Stats reports socket counters for metrics.
func (c *Connector) Stats() connector.Stats {
	return connector.Stats{Reconnects: c.reconnects.Load(), MissedHeartbeats: c.missedHB.Load(),
		GapFilled: c.gapFilled.Load(), Wait: c.waits.Last()}
}

// session returns the open session with id, or the error a command for
// it gets: ErrNotConnected for an unknown one while not connected.
func (c *Connector) session(id string) (*session, *runState, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s := c.sessions[id]; s != nil {
		return s, c.run, nil
	}
	if _, ok := c.ended[id]; ok {
		return nil, nil, errSessionEnded(id)
	}
	if by := c.replaced[id]; by != "" || c.run != nil {
		return nil, nil, errSessionGone(id, by)
	}
	// Not connected: the session may be in the state store, read at the
	// next Connect (a restarted bridge runs commands as soon as it
	// starts), so the command is retried rather than refused.
	return nil, nil, connector.ErrNotConnected
}

// errSessionEnded is the refusal of a command for a session the
// platform ended.
func errSessionEnded(id string) error {
	return &connector.PlatformError{Status: http.StatusNotFound, Code: "session_ended",
		Message: "session " + id + " ended"}
}

// errSessionGone is the refusal of a command for a session the connector
// does not hold (any more).
func errSessionGone(id, by string) error {
	if by != "" {
		return &connector.PlatformError{Status: http.StatusNotFound, Code: "session_replaced",
			Message: fmt.Sprintf("session %s was replaced by %s", id, by)}
	}
	return &connector.PlatformError{Status: http.StatusNotFound, Code: "session_not_found",
		Message: fmt.Sprintf("no open session %s on this connection", id)}
}
