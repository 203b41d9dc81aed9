package band

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/internal/phoenix"
	"github.com/bridgeworks/bridge/internal/tick"
)

// Default hosts.
const (
	BandBaseURL    = "https://app.band.ai"
	ThenvoiBaseURL = "https://app.thenvoi.com"
	socketPath     = "/api/v1/socket/websocket"
)

// Options tune a connector; zero values mean the defaults stated per field.
type Options struct {
	// HeartbeatInterval between Phoenix heartbeats, default 30s (Band closes
	// idle sockets after ~45s).
	HeartbeatInterval time.Duration
	// IdleResync is how long a room may be quiet before /messages/next is
	// polled again as a safety net for missed pushes, default 60s.
	IdleResync time.Duration
	// QueueSize bounds events waiting for Receive, default 64. A full queue
	// holds the socket reader back (back-pressure), it never drops.
	QueueSize int
	// JoinParallelism bounds concurrent room joins and drains, default 16.
	JoinParallelism int
	// Backoff is the socket's reconnect policy, default phoenix.DefaultBackoff().
	Backoff phoenix.Backoff
	// OnConflict is sent as on_conflict ("supersede" or "reject"); empty
	// sends nothing (the platform's default: last connection wins).
	OnConflict string

	// beats times the heartbeats of the sockets sharing these options (set
	// on a Factory's shared copy); nil: a timer per socket.
	beats *tick.Wheel
}

func (o Options) withDefaults() Options {
	if o.HeartbeatInterval <= 0 {
		o.HeartbeatInterval = 30 * time.Second
	}
	if o.IdleResync <= 0 {
		o.IdleResync = 60 * time.Second
	}
	if o.QueueSize <= 0 {
		o.QueueSize = 64
	}
	if o.JoinParallelism <= 0 {
		o.JoinParallelism = 16
	}
	return o
}

// Connector is one Band agent.
type Connector struct {
	cfg   connector.Config
	st    Settings
	opts  *Options // shared by the Factory's connectors with the same (see optionSet)
	log   zerolog.Logger
	rest  *restClient
	wsURL string
	agent atomic.Value           // string: the agent's id, from config or /agent/me
	seen  *seenSet               // message ids stored in JetStream, across sessions
	dials *connector.DialLimiter // shared by the process; nil: unpaced
	catch *connector.Gate        // shared by the process; nil: unbounded
	idle  *tick.Wheel            // the rooms' idle tick, shared by the Factory's connectors; nil: a timer per session
	waits connector.WaitBoard

	connMu sync.Mutex // serialises Connect and Close (held across network calls)
	mu     sync.Mutex // guards sess only; never held across a call
	sess   *session

	reconnects, missedHB, gapFilled atomic.Uint64 // totals of ended sessions + gap-fills
}

// Factory returns the registry entry for platform name "band" (and, with
// thenvoi set, for the "thenvoi" alias whose default host is Thenvoi's).
func Factory(thenvoi bool, opts Options) connector.Factory {
	def := BandBaseURL
	if thenvoi {
		def = ThenvoiBaseURL
	}
	// One runtime timer ticks every connection's idle safety net, and one
	// copy of each distinct Options serves the connections that have it.
	idle := tick.New(idlePeriod(opts.withDefaults()))
	set := &optionSet{}
	return connector.Factory{Platform: "band", Secrets: []string{secretAPIKey},
		Check: func(cfg connector.Config) error { _, err := settings(cfg, def); return err },
		New: func(cfg connector.Config, deps connector.Deps) (connector.Connector, error) {
			c, err := newConnector(cfg, def, deps, opts, set)
			if err != nil {
				return nil, err
			}
			c.idle = idle
			return c, nil
		},
		CommandSchemas: CommandSchemas}
}

// New builds a connector with Band's default host; it does no I/O. cfg's
// settings are [Settings]; its secret api_key is read at every connect.
func New(cfg connector.Config, deps connector.Deps, opts Options) (*Connector, error) {
	return newConnector(cfg, BandBaseURL, deps, opts, nil)
}

// optionSet holds one copy of each distinct Options of a Factory's
// connectors: they differ from the Factory's only where newConnector sets
// them from a connection's config (optionKey), and a copy each is 0.2
// KiB.
type optionSet struct {
	mu   sync.Mutex
	opts map[optionKey]*Options
}

// optionKey is what newConnector sets in a Factory's Options.
type optionKey struct{ heartbeat, retryAfterMax, base, max time.Duration }

// get returns the set's copy of o, a Factory's Options as newConnector
// set them (a copy of its own with a nil set).
func (s *optionSet) get(o Options) *Options {
	if s == nil {
		return &o
	}
	k := optionKey{o.HeartbeatInterval, o.Backoff.RetryAfterMax, o.Backoff.Base, o.Backoff.Max}
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.opts[k]; p != nil {
		return p
	}
	if s.opts == nil {
		s.opts = map[optionKey]*Options{}
	}
	p := &o
	// One runtime timer beats the sockets of every connector sharing p.
	p.beats = tick.New(p.HeartbeatInterval)
	s.opts[k] = p
	return p
}

func newConnector(cfg connector.Config, defBase string, deps connector.Deps, opts Options, set *optionSet) (*Connector, error) {
	st, err := settings(cfg, defBase)
	if err != nil {
		return nil, fmt.Errorf("band: %w", err)
	}
	if st.HeartbeatInterval > 0 {
		opts.HeartbeatInterval = st.HeartbeatInterval
	}
	if cfg.RetryAfterMax <= 0 {
		cfg.RetryAfterMax = connector.DefaultRetryAfterMax
	}
	opts.Backoff.RetryAfterMax = cfg.RetryAfterMax
	// The connection's reconnect policy sets the socket's exponential part;
	// the rapid-disconnect hold-downs stay the socket's own.
	if cfg.Reconnect.Initial > 0 {
		opts.Backoff.Base = cfg.Reconnect.Initial
	}
	if cfg.Reconnect.Max > 0 {
		opts.Backoff.Max = cfg.Reconnect.Max
	}
	c := &Connector{cfg: cfg, st: st, opts: set.get(opts.withDefaults()), log: deps.Log, wsURL: st.WSURL, seen: newSeenSet(50000),
		dials: deps.Dials, catch: deps.CatchUp}
	c.rest = newRESTClient(st.BaseURL, deps.HTTPClient, cfg.RetryAfterMax, &c.log, &c.waits)
	c.rest.refresh = func() (string, error) { return c.cfg.Secrets.Get(secretAPIKey) }
	c.cfg.Settings = nil // decoded into st: not kept
	c.agent.Store(st.AgentID)
	return c, nil
}

func (c *Connector) agentID() string { return c.agent.Load().(string) }

// socketURL adds the query Band expects; it carries the key, so it is
// only ever logged through phoenix.RedactURL.
func (c *Connector) socketURL(key string) string {
	u, _ := url.Parse(c.wsURL)
	q := u.Query()
	q.Set("api_key", key)
	q.Set("agent_id", c.agentID())
	q.Set("vsn", "2.0.0")
	if c.opts.OnConflict != "" {
		q.Set("on_conflict", c.opts.OnConflict)
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// Connect checks the key with GET /agent/me, opens the socket and joins the
// agent's channels. Room sync and catch-up continue in the background.
func (c *Connector) Connect(ctx context.Context) error {
	c.connMu.Lock()
	defer c.connMu.Unlock()
	c.mu.Lock()
	busy := c.sess != nil
	c.mu.Unlock()
	if busy {
		return errors.New("band: already connected")
	}
	if _, err := c.apiKey(); err != nil {
		return err
	}
	var me struct {
		ID string `json:"id"`
	}
	if err := c.getJSON(ctx, "/api/v1/agent/me", &me); err != nil {
		return fmt.Errorf("band: check api key: %w", err)
	}
	if id := c.agentID(); id == "" {
		c.agent.Store(me.ID)
	} else if me.ID != "" && me.ID != id {
		return connector.Permanent(fmt.Errorf("band: agent_id %s does not belong to this api key (it is agent %s)", id, me.ID))
	}
	s := newSession(c)
	if err := s.start(ctx); err != nil {
		return err
	}
	// Closed by the first open, which start waited for; nothing reads it
	// again (a channel kept per idle session is 112 bytes).
	s.opened = nil
	c.mu.Lock()
	c.sess = s
	c.mu.Unlock()
	return nil
}

// Receive returns the next event of the current session.
func (c *Connector) Receive(ctx context.Context) (connector.Event, connector.AckFunc, error) {
	c.mu.Lock()
	s := c.sess
	c.mu.Unlock()
	if s == nil {
		return connector.Event{}, nil, connector.ErrNotConnected
	}
	return s.receive(ctx)
}

// TryReceive returns the next event of the current session if one is
// ready (connector.Notifier).
func (c *Connector) TryReceive() (connector.Event, connector.AckFunc, bool, error) {
	c.mu.Lock()
	s := c.sess
	c.mu.Unlock()
	if s == nil {
		return connector.Event{}, nil, true, connector.ErrNotConnected
	}
	return s.tryReceive()
}

// Notify calls ready once the current session has an event or ended
// (connector.Notifier); at once without a session.
func (c *Connector) Notify(ready func()) {
	c.mu.Lock()
	s := c.sess
	c.mu.Unlock()
	if s == nil {
		ready()
		return
	}
	s.notifyOn(ready)
}

// Close ends the session; it is idempotent.
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
	err := s.stop(ctx)
	st := s.sock.Stats()
	c.reconnects.Add(st.Reconnects)
	c.missedHB.Add(st.MissedHeartbeats)
	return err
}

// Stats reports socket counters for metrics.
func (c *Connector) Stats() connector.Stats {
	st := connector.Stats{Reconnects: c.reconnects.Load(), MissedHeartbeats: c.missedHB.Load(), GapFilled: c.gapFilled.Load(),
		Wait: c.waits.Last()}
	c.mu.Lock()
	s := c.sess
	c.mu.Unlock()
	if s != nil {
		ps := s.sock.Stats()
		st.Reconnects += ps.Reconnects
		st.MissedHeartbeats += ps.MissedHeartbeats
	}
	return st
}

func (c *Connector) getJSON(ctx context.Context, path string, v any) error {
	_, data, err := c.rest.call(ctx, true, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	if v == nil || data == nil {
		return nil
	}
	return jsonUnmarshal(data, v, path)
}
