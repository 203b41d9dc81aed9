package bridge

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/bridgeworks/bridge/claimcheck"
	"github.com/bridgeworks/bridge/config"
	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/natsbus"
	"github.com/bridgeworks/bridge/retry"
	"github.com/bridgeworks/bridge/subjects"
)

// Options are the bridge's runtime dependencies.
type Options struct {
	Log      zerolog.Logger
	Registry connector.Registry // platforms by configured name (the program passes platforms.All)
	// LookupEnv resolves *_env secrets, default os.LookupEnv.
	LookupEnv func(string) (string, bool)
	// OnReady is called once NATS is connected, the streams exist and the
	// HTTP listener is bound.
	OnReady func(Info)
	// ShutdownTimeout bounds the drain of in-flight work at shutdown, default 15s.
	ShutdownTimeout time.Duration
}

// Info tells where the running bridge can be reached.
type Info struct {
	NATSClientURL string // where workers connect ("" when embedded with no listener and no URL)
	HTTPAddr      string // bound address of the HTTP listener, "" when disabled
	// Conn is the bridge's own NATS connection. Its inboxes are never a
	// reply destination, so an RPC request sent on it is not answered: make
	// RPC calls on a connection of your own, as a worker does.
	Conn *nats.Conn
}

// Bridge is a configured, not yet running bridge.
type Bridge struct {
	cfg   *config.Config
	opts  Options
	conns []connEntry
}

type connEntry struct {
	cfg     config.Connection
	factory connector.Factory
	ccfg    connector.Config
}

// New checks the configuration against the known platforms: each
// connection's settings are decoded and checked by its platform, and its
// secrets resolved once (so check-config reports a missing one); it does no
// I/O beyond reading secret files. Connectors read their secrets again
// when they need them.
func New(cfg *config.Config, opts Options) (*Bridge, error) {
	if opts.LookupEnv == nil {
		opts.LookupEnv = os.LookupEnv
	}
	if opts.ShutdownTimeout == 0 {
		opts.ShutdownTimeout = 15 * time.Second
	}
	b := &Bridge{cfg: cfg, opts: opts}
	for _, c := range cfg.Connection {
		f, ok := opts.Registry[c.Platform]
		if !ok {
			return nil, fmt.Errorf("config: connection %q: platform %q is not one of %s", c.Name, c.Platform, strings.Join(knownPlatforms(opts.Registry), ", "))
		}
		ccfg, err := connectorConfig(c, f, opts.LookupEnv)
		if err != nil {
			return nil, fmt.Errorf("config: connection %q: %w", c.Name, err)
		}
		b.conns = append(b.conns, connEntry{cfg: c, factory: f, ccfg: ccfg})
	}
	return b, nil
}

// connectorConfig is what connection c's connector gets: its settings
// table split into plain settings and secrets, checked by the platform.
func connectorConfig(c config.Connection, f connector.Factory, lookupEnv func(string) (string, bool)) (connector.Config, error) {
	settings, secrets, err := connector.SplitSettings(c.Settings, f.Secrets, lookupEnv)
	if err != nil {
		return connector.Config{}, err
	}
	ccfg := connector.Config{
		Name: c.Name, Platform: c.Platform, Settings: settings, Secrets: secrets,
		RetryAfterMax: c.RetryAfterMax.D(),
		Reconnect:     retry.Policy{Initial: c.ReconnectInitial.D(), Max: c.ReconnectMax.D()},
	}
	if f.Check != nil {
		if err := f.Check(ccfg); err != nil {
			return connector.Config{}, err
		}
	}
	for _, name := range secrets.Names() {
		if _, err := secrets.Get(name); err != nil {
			return connector.Config{}, err
		}
	}
	return ccfg, nil
}

func knownPlatforms(r connector.Registry) []string {
	names := make([]string, 0, len(r))
	for n := range r {
		names = append(names, n)
	}
	slices.Sort(names)
	if len(names) == 0 {
		return []string{"(none registered)"}
	}
	return names
}

// Run starts NATS (embedded when no URL is set), provisions the streams,
// serves HTTP and runs every enabled connection until ctx ends, then drains
// in-flight work within ShutdownTimeout. It returns the first fatal error.
func (b *Bridge) Run(ctx context.Context) error {
	log := b.opts.Log
	cfg := b.cfg
	var srv *natsbus.Embedded
	var embedded *server.Server
	if cfg.NATS.URL == "" {
		var err error
		srv, err = natsbus.StartEmbedded(natsbus.EmbeddedOptions{
			Listen: cfg.NATS.Embedded.Listen, StoreDir: cfg.NATS.Embedded.StoreDir, MaxStore: int64(cfg.NATS.Embedded.MaxStore),
		}, log)
		if err != nil {
			return err
		}
		defer srv.Shutdown()
		embedded = srv.Server
	}
	nopts, err := b.natsOptions(embedded)
	if err != nil {
		return err
	}
	nc, err := natsbus.Connect(ctx, nopts, log)
	if err != nil {
		return err
	}
	defer func() {
		// Close and wait for nats.go's last callbacks (they log), so nothing
		// of this run outlives Run.
		closed := make(chan struct{})
		nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
		nc.Close()
		select {
		case <-closed:
		case <-time.After(5 * time.Second):
		}
	}()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	clientURL := cfg.NATS.URL
	if srv != nil {
		clientURL = natsbus.ClientURL(srv)
	}

	m := newMetrics()
	httpClient := connector.NewHTTPClient() // one pool for every connection's REST calls
	platformOf := map[string]string{}       // filled before any supervisor runs; read-only after
	for _, ce := range b.conns {
		platformOf[ce.cfg.Name] = ce.factory.Platform
	}
	board := newStatusBoard(func(name string, _, to State) { m.setState(name, platformOf[name], to) })
	var ready atomic.Bool
	g, gctx := errgroup.WithContext(ctx)

	if srv != nil {
		g.Go(func() error { srv.KeepJetStream(gctx, time.Second); return nil })
	}
	httpAddr := make(chan string, 1)
	if cfg.HTTP.Listen != "none" {
		h := &httpServer{nc: nc, js: js, ready: &ready, board: board, m: m, started: time.Now().UTC(), natsURL: natsbus.RedactURL(clientURL)}
		g.Go(func() error {
			if err := h.serve(gctx, cfg.HTTP.Listen, func(a string) { httpAddr <- a }); err != nil {
				return fmt.Errorf("http: %w", err)
			}
			return nil
		})
	} else {
		httpAddr <- ""
	}

	if err := b.ensureStreams(gctx, js); err != nil {
		return errors.Join(err, g.Wait())
	}
	ls, err := openLeases(gctx, js, nc, cfg.NATS.Prefix, b.owner(), cfg.Lease.TTL.D(), cfg.NATS.Replicas)
	if err != nil {
		return errors.Join(err, g.Wait())
	}
	defer ls.close()
	log.Info().Str("owner", ls.self.Owner).Str("instance", ls.self.Instance).Msg("lease identity")
	stored, err := openPublished(gctx, js, cfg.NATS.Prefix, cfg.NATS.EventsMaxAge.D(), cfg.NATS.Replicas)
	if err != nil {
		return errors.Join(err, g.Wait())
	}
	state, err := openStateBucket(gctx, js, cfg.NATS.Prefix, cfg.NATS.Replicas)
	if err != nil {
		return errors.Join(err, g.Wait())
	}
	ready.Store(true)

	for _, ce := range b.conns {
		if !ce.cfg.IsEnabled() {
			board.add(ce.cfg.Name, ce.factory.Platform, StateDisabled)
			continue
		}
		board.add(ce.cfg.Name, ce.factory.Platform, StateStarting)
		clog := log.With().Str("connection", ce.cfg.Name).Str("platform", ce.factory.Platform).Logger()
		c, err := ce.factory.New(ce.ccfg, connector.Deps{Log: clog, HTTPClient: httpClient, State: newStateStore(state, ce.cfg.Name)})
		if err != nil {
			return errors.Join(fmt.Errorf("connection %q: %w", ce.cfg.Name, err), g.Wait())
		}
		cc := b.payloads(js, ce.cfg.Name)
		s := &supervisor{
			name: ce.cfg.Name, platform: ce.factory.Platform, c: c, board: board, m: m, log: clog,
			reconnect: ce.ccfg.Reconnect, retryAfterMax: ce.cfg.RetryAfterMax.D(), drain: b.opts.ShutdownTimeout,
			pub: &publisher{js: js, prefix: cfg.NATS.Prefix, platform: ce.factory.Platform, conn: ce.cfg.Name, log: clog, m: m, board: board, stored: stored, cc: cc},
		}
		if sr, ok := c.(connector.StatsReporter); ok {
			m.watchStats(ce.cfg.Name, sr)
			board.watch(ce.cfg.Name, sr)
		}
		runs, err := b.returnPath(js, nc, m, ce, c, cc, clog)
		if err != nil {
			return errors.Join(err, g.Wait())
		}
		g.Go(func() error { return b.runConnection(gctx, ls.lease(ce.cfg.Name), s, runs) })
	}

	addr := ""
	select {
	case addr = <-httpAddr:
	case <-gctx.Done():
	}
	if b.opts.OnReady != nil && gctx.Err() == nil {
		b.opts.OnReady(Info{NATSClientURL: clientURL, HTTPAddr: addr, Conn: nc})
	}
	log.Info().Str("nats", natsbus.RedactURL(clientURL)).Str("http", addr).Int("connections", len(b.conns)).Msg("bridge running")
	err = g.Wait()
	log.Info().Msg("bridge stopped")
	return err
}

// owner names this replica in leases: lease.owner, else the host name. A
// restarted pod keeps it and takes its connections back at once once its
// earlier process is provably gone (see leases).
func (b *Bridge) owner() string {
	if b.cfg.Lease.Owner != "" {
		return b.cfg.Lease.Owner
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "bridge"
}

// runConnection runs one connection whenever this replica holds its lease:
// the platform session, the command executor and managed dispatch.
func (b *Bridge) runConnection(ctx context.Context, ls *lease, s *supervisor, runs []func(context.Context) error) error {
	ls.health = func(err error) { s.board.natsError(s.name, "lease", err) }
	for {
		err := ls.acquire(ctx, func(holder string) {
			s.board.setHolder(s.name, holder)
			s.board.set(s.name, StateStandby, nil)
			s.log.Info().Str("holder", holder).Msg("another process holds this connection; standing by")
		})
		if err != nil {
			return nil // ctx ended
		}
		s.board.setHolder(s.name, ls.l.self.String())
		s.log.Info().Msg("lease acquired")
		s.pub.sys(ctx, subjects.LifecycleLeaseAcquired, map[string]any{"owner": ls.l.self.Owner, "instance": ls.l.self.Instance})
		lctx, cancel := context.WithCancel(ctx)
		var lost error
		var wg sync.WaitGroup
		wg.Go(func() {
			if lost = ls.hold(lctx); lost != nil {
				cancel()
			}
		})
		wg.Go(func() { _ = s.run(lctx) }) // a stopped connection shows on /status; its commands still run
		for _, run := range runs {
			wg.Go(func() {
				if err := run(lctx); err != nil {
					s.log.Error().Err(err).Msg("return path stopped")
				}
			})
		}
		wg.Wait()
		cancel()
		s.board.natsError(s.name, "publish", nil) // nothing publishes here now
		if lost == nil {
			rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			ls.release(rctx)
			rcancel()
			return nil
		}
		s.log.Warn().Err(lost).Msg("lease lost; the connection stopped here")
		s.board.set(s.name, StateStandby, lost)
		s.pub.sys(ctx, subjects.LifecycleLeaseLost, map[string]any{"reason": lost.Error()})
	}
}

// payloads is the claim-check store of a connection: messages too large
// for NATS keep their payload there. Objects live as long as the longer of
// the events and dead-letter streams' max age, so a reference never outlives
// its object (a dead letter can carry one).
func (b *Bridge) payloads(js jetstream.JetStream, conn string) *claimcheck.Store {
	n := b.cfg.NATS
	return claimcheck.New(claimcheck.Options{JS: js, Prefix: n.Prefix, Conn: conn,
		MaxAge: max(n.EventsMaxAge.D(), n.DLQMaxAge.D()), Replicas: n.Replicas})
}

func (b *Bridge) ensureStreams(ctx context.Context, js jetstream.JetStream) error {
	n := b.cfg.NATS
	o := natsbus.StreamOptions{
		Prefix: n.Prefix, Replicas: n.Replicas, DuplicateWindow: n.DuplicateWindow.D(),
		EventsMaxAge: n.EventsMaxAge.D(), CommandsMaxAge: n.CommandsMaxAge.D(), DLQMaxAge: n.DLQMaxAge.D(),
		// Every configured connection, enabled or not: commands for any
		// other are refused at publish.
		Connections: make([]natsbus.StreamConn, 0, len(b.conns)),
	}
	for _, ce := range b.conns {
		o.Connections = append(o.Connections, natsbus.StreamConn{Platform: ce.factory.Platform, Name: ce.cfg.Name})
	}
	bo := retry.Policy{Initial: 500 * time.Millisecond, Max: 15 * time.Second}.Start()
	for {
		dropped, err := natsbus.DroppedCommandSubjects(ctx, js, o)
		if err == nil && len(dropped) > 0 {
			b.opts.Log.Warn().Strs("subjects", dropped).
				Msg("commands stream: these subjects are no longer captured (connections this config does not have); their commands are refused from now on, those already stored stay until commands_max_age")
		}
		if err == nil {
			err = natsbus.EnsureStreams(ctx, js, o)
		}
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return err
		}
		wait := bo.Next()
		b.opts.Log.Warn().Err(err).Dur("retry_in", wait).Msg("streams not ready; retrying")
		if !retry.Sleep(ctx, wait) {
			return err
		}
	}
}

func (b *Bridge) natsOptions(srv *server.Server) (natsbus.Options, error) {
	o, err := NATSOptions(b.cfg.NATS, b.opts.LookupEnv)
	o.Embedded = srv
	return o, err
}
