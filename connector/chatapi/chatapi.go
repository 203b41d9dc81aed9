package chatapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"

	"github.com/rs/zerolog"

	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/retry"
)

// Platform is the subject token of the Chat API.
const Platform = "chatapi"

// queueSize bounds the inbox items waiting for Receive; a full queue holds
// the pollers back.
const queueSize = 64

// Connector is one Chat API account (one API key).
type Connector struct {
	cfg   connector.Config
	st    Settings
	log   zerolog.Logger
	rest  *client
	state connector.StateStore // nil: nothing survives a restart
	waits connector.WaitBoard
	recon retry.Policy

	inboxes map[string]*inbox // by agent id; fixed at New

	connMu sync.Mutex // serialises Connect and Close
	mu     sync.Mutex // guards sess; never held across a call
	sess   *session

	reconnects atomic.Uint64 // polls that worked again after failures
}

// Factory returns the registry entry of platform "chatapi".
func Factory() connector.Factory {
	return connector.Factory{Platform: Platform, Secrets: []string{secretAPIKey},
		Check: func(cfg connector.Config) error { _, err := settings(cfg); return err },
		New: func(cfg connector.Config, deps connector.Deps) (connector.Connector, error) {
			return New(cfg, deps)
		},
		CommandSchemas: CommandSchemas}
}

// New builds a connector; it does no I/O. The API key is read at the
// first call and again when the platform refuses it.
func New(cfg connector.Config, deps connector.Deps) (*Connector, error) {
	st, err := settings(cfg)
	if err != nil {
		return nil, fmt.Errorf("chatapi: %w", err)
	}
	if cfg.RetryAfterMax <= 0 {
		cfg.RetryAfterMax = connector.DefaultRetryAfterMax
	}
	c := &Connector{cfg: cfg, st: st, log: deps.Log, state: deps.State, recon: cfg.Reconnect, inboxes: map[string]*inbox{}}
	c.rest = newClient(st.BaseURL, deps.HTTPClient, newLimiter(st.RateLimit, st.RateBurst), cfg.RetryAfterMax, &c.waits, deps.Log,
		func() (string, error) { return cfg.Secrets.Get(secretAPIKey) })
	for _, a := range st.InboxAgents {
		c.inboxes[a] = newInbox(a)
	}
	return c, nil
}

// Connect checks each polled agent (GET /agents/:id: the key and the id)
// and starts one poller per agent. With no inbox_agents it only checks
// that the key can be read.
func (c *Connector) Connect(ctx context.Context) error {
	c.connMu.Lock()
	defer c.connMu.Unlock()
	c.mu.Lock()
	busy := c.sess != nil
	c.mu.Unlock()
	if busy {
		return errors.New("chatapi: already connected")
	}
	if _, err := c.rest.reloadKey(); err != nil {
		return err
	}
	for _, a := range c.st.InboxAgents {
		if _, _, err := c.rest.getJSON(ctx, agentPath(a, "")); err != nil {
			var pe *connector.PlatformError
			if errors.As(err, &pe) && pe.Status == http.StatusNotFound {
				return connector.Permanent(fmt.Errorf("chatapi: settings.inbox_agents: agent %s not found (or not visible to this key)", a))
			}
			return fmt.Errorf("chatapi: check agent %s: %w", a, err)
		}
		if err := c.inboxes[a].load(ctx, c.state); err != nil {
			return fmt.Errorf("chatapi: %w", err)
		}
	}
	s := newSession(c)
	s.start()
	c.mu.Lock()
	c.sess = s
	c.mu.Unlock()
	return nil
}

// Receive returns the next inbox item (or a poller's lifecycle event);
// with nothing to poll it waits for ctx or Close.
func (c *Connector) Receive(ctx context.Context) (connector.Event, connector.AckFunc, error) {
	c.mu.Lock()
	s := c.sess
	c.mu.Unlock()
	if s == nil {
		return connector.Event{}, nil, connector.ErrNotConnected
	}
	it, err := connector.Next(ctx, s.out, s.halt)
	if err != nil {
		return connector.Event{}, nil, err
	}
	return it.ev, it.ack, nil
}

// Close stops the pollers, marks read what was stored (bounded by ctx)
// and forgets the items queued but never received; it is idempotent.
func (c *Connector) Close(ctx context.Context) error {
	c.connMu.Lock()
	defer c.connMu.Unlock()
	c.mu.Lock()
	s := c.sess
	c.sess = nil
	c.mu.Unlock()
	if s == nil {
		return nil
	}
	return s.stop(ctx)
}

// Stats reports the polls that recovered and the platform's latest wait.
func (c *Connector) Stats() connector.Stats {
	return connector.Stats{Reconnects: c.reconnects.Load(), Wait: c.waits.Last()}
}

// agentPath is /agents/<id><suffix>.
func agentPath(id, suffix string) string { return "/agents/" + url.PathEscape(id) + suffix }

// teamPath is /teams/<id><suffix>.
func teamPath(id, suffix string) string { return "/teams/" + url.PathEscape(id) + suffix }
