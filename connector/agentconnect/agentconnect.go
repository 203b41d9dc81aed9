package agentconnect

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/bridgeworks/bridge/connector"
)

// Platform is the subject token of AgentConnect.
const Platform = "agentconnect"

// stateKeyPrefix prefixes the state keys of open sessions.
const stateKeyPrefix = "sessions/"

// Factory returns the registry entry of platform "agentconnect".
func Factory() connector.Factory {
	return connector.Factory{Platform: Platform, Secrets: []string{secretUsername, secretPassword},
		Check: func(cfg connector.Config) error { _, err := settings(cfg); return err },
		New: func(cfg connector.Config, deps connector.Deps) (connector.Connector, error) {
			return New(cfg, deps)
		},
		CommandSchemas: CommandSchemas}
}

// sessionRec is what the connector keeps of one open session, in the
// state store under sessions/<id> so a restarted bridge reattaches it.
type sessionRec struct {
	ID       string    `json:"session_id"`
	Type     string    `json:"session_type"` // human_agent or agent_agent
	HumanID  string    `json:"human_id,omitempty"`
	AgentIDs []string  `json:"agent_ids,omitempty"`
	Created  time.Time `json:"created_at"`
	// CreatedBy is the state key of the create_session command's record,
	// dropped with the session.
	CreatedBy string `json:"created_by,omitempty"`
}

// Connector is one AgentConnect account and its open sessions, each with
// one socket (see hub).
type Connector struct {
	cfg   connector.Config
	st    Settings
	log   zerolog.Logger
	http  *http.Client
	state connector.StateStore // nil: sessions are kept in memory only
	auth  *auth
	waits connector.WaitBoard

	connMu sync.Mutex // serialises Connect and Close
	mu     sync.Mutex // guards the fields below; never held across a call
	known  map[string]sessionRec
	fresh  map[string]bool // sessions created here whose socket never opened: no gap is possible
	hub    *hub            // nil when not connected

	reconnects, missedPings, malformed atomic.Uint64
}

// New builds a connector; it does no I/O.
func New(cfg connector.Config, deps connector.Deps) (*Connector, error) {
	st, err := settings(cfg)
	if err != nil {
		return nil, fmt.Errorf("agentconnect: %w", err)
	}
	if cfg.RetryAfterMax <= 0 {
		cfg.RetryAfterMax = connector.DefaultRetryAfterMax
	}
	hc := deps.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second, CheckRedirect: connector.SameOriginRedirects}
	}
	c := &Connector{cfg: cfg, st: st, log: deps.Log, http: hc, state: deps.State, known: map[string]sessionRec{}, fresh: map[string]bool{}}
	c.auth = &auth{c: c}
	return c, nil
}

// Connect logs in, reads the open sessions from the state store and
// opens one socket per session (in the background: a session whose socket
// fails does not fail the connection).
func (c *Connector) Connect(ctx context.Context) error {
	c.connMu.Lock()
	defer c.connMu.Unlock()
	c.mu.Lock()
	busy := c.hub != nil
	c.mu.Unlock()
	if busy {
		return errors.New("agentconnect: already connected")
	}
	if _, err := c.auth.get(ctx); err != nil {
		return err
	}
	recs, err := c.loadSessions(ctx)
	if err != nil {
		return err
	}
	h := newHub(c)
	c.mu.Lock()
	for _, r := range recs {
		c.known[r.ID] = r
	}
	c.hub = h
	for _, r := range c.known {
		h.attach(r)
	}
	c.mu.Unlock()
	c.log.Info().Int("sessions", len(recs)).Msg("connected; reattaching the open sessions")
	return nil
}

// Receive returns the next event of any open session.
func (c *Connector) Receive(ctx context.Context) (connector.Event, connector.AckFunc, error) {
	c.mu.Lock()
	h := c.hub
	c.mu.Unlock()
	if h == nil {
		return connector.Event{}, nil, connector.ErrNotConnected
	}
	select {
	case it := <-h.out:
		return it, func(context.Context, error) {}, nil
	case <-ctx.Done():
		return connector.Event{}, nil, ctx.Err()
	}
}

// Close closes every session's socket (the sessions stay open on the
// platform and in the state store); it is idempotent.
func (c *Connector) Close(ctx context.Context) error {
	c.connMu.Lock()
	defer c.connMu.Unlock()
	c.mu.Lock()
	h := c.hub
	c.hub = nil
	c.mu.Unlock()
	if h == nil {
		return nil
	}
	return h.stop(ctx)
}

// Stats reports socket counters: redials of sessions' sockets, silences
// past ping_timeout, and the latest wait the platform imposed.
func (c *Connector) Stats() connector.Stats {
	return connector.Stats{Reconnects: c.reconnects.Load(), MissedHeartbeats: c.missedPings.Load(), Wait: c.waits.Last()}
}

// loadSessions reads the open sessions kept in the state store.
func (c *Connector) loadSessions(ctx context.Context) ([]sessionRec, error) {
	if c.state == nil {
		return nil, nil
	}
	keys, err := c.state.List(ctx, stateKeyPrefix)
	if err != nil {
		return nil, fmt.Errorf("agentconnect: list open sessions: %w", err)
	}
	var out []sessionRec
	for _, k := range keys {
		b, _, err := c.state.Get(ctx, k)
		if errors.Is(err, connector.ErrStateNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("agentconnect: read %s: %w", k, err)
		}
		var r sessionRec
		if err := json.Unmarshal(b, &r); err != nil || !sessionID.MatchString(r.ID) || r.ID != strings.TrimPrefix(k, stateKeyPrefix) {
			c.log.Warn().Str("key", k).Msg("state: not an open session record; ignored")
			continue
		}
		out = append(out, r)
	}
	return out, nil
}

// remember keeps a session created by a command and, when connected,
// opens its socket; fresh says the session was just created (its first
// socket follows no earlier one, so no gap is possible).
func (c *Connector) remember(ctx context.Context, r sessionRec, fresh bool) error {
	if c.state != nil {
		b, _ := json.Marshal(r)
		if _, err := c.state.Put(ctx, stateKeyPrefix+r.ID, b); err != nil {
			return fmt.Errorf("agentconnect: keep session %s: %w", r.ID, err)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.known[r.ID] = r
	if fresh {
		c.fresh[r.ID] = true
	}
	if c.hub != nil {
		c.hub.attach(r)
	}
	return nil
}

// forget drops a session that ended: from the state store, and its socket
// (at once, or after grace so the platform's last notice still arrives).
func (c *Connector) forget(ctx context.Context, id string, grace time.Duration) {
	c.mu.Lock()
	createdBy := c.known[id].CreatedBy
	delete(c.known, id)
	delete(c.fresh, id)
	h := c.hub
	c.mu.Unlock()
	if c.state != nil && createdBy != "" {
		if err := c.state.Delete(ctx, createdBy, 0); err != nil && !errors.Is(err, connector.ErrStateNotFound) {
			c.log.Warn().Err(err).Str("session_id", id).Msg("state: cannot drop the session's create record")
		}
	}
	if h != nil {
		h.detach(id, grace)
	}
	if c.state != nil {
		if err := c.state.Delete(ctx, stateKeyPrefix+id, 0); err != nil && !errors.Is(err, connector.ErrStateNotFound) {
			c.log.Warn().Err(err).Str("session_id", id).Msg("state: cannot drop the ended session; a restart will try it again")
		}
	}
}

// session returns the socket of an open session, or why there is none.
func (c *Connector) session(id string) (*sock, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.known[id]; !ok {
		return nil, &connector.PlatformError{Status: http.StatusNotFound, Code: "unknown_session",
			Message: fmt.Sprintf("session %q is not open on this connection (create it with create_session)", id)}
	}
	if c.hub == nil {
		return nil, fmt.Errorf("agentconnect: session %s: %w", id, connector.ErrNotConnected)
	}
	s := c.hub.socks[id]
	if s == nil {
		return nil, fmt.Errorf("agentconnect: session %s: %w", id, connector.ErrNotConnected)
	}
	return s, nil
}
