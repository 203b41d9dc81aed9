package bridge

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/bridgeworks/bridge/claimcheck"
	"github.com/bridgeworks/bridge/cmdexec"
	"github.com/bridgeworks/bridge/config"
	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/dispatch"
	"github.com/bridgeworks/bridge/internal/tick"
	"github.com/bridgeworks/bridge/natsbus"
	"github.com/bridgeworks/bridge/retry"
	"github.com/bridgeworks/bridge/subjects"
)

// Bridge is a configured bridge. Run runs it; Reload changes its
// connections while it runs.
type Bridge struct {
	// cfg and conns are what Run starts from; a reload replaces them, on
	// Run's goroutine only.
	cfg     *config.Config
	opts    Options
	conns   []connEntry
	reloads chan reloadRequest // taken by Run's loop
}

// connEntry is a checked connection; its connector's config is made again
// when it starts (see connectorSettings), not kept beside it.
type connEntry struct {
	cfg     config.Connection
	factory connector.Factory
}

// New checks the configuration against the known platforms: each
// connection's settings are decoded and checked by its platform, and its
// secrets resolved once (so check-config reports a missing one); it does no
// I/O beyond reading secret files. Connectors read their secrets again
// when they need them. Every connection's mistakes are reported, one line
// each (a joined error).
func New(cfg *config.Config, opts Options) (*Bridge, error) {
	if opts.LookupEnv == nil {
		opts.LookupEnv = os.LookupEnv
	}
	if opts.ShutdownTimeout == 0 {
		opts.ShutdownTimeout = 15 * time.Second
	}
	if opts.Version == "" {
		opts.Version = "dev"
	}
	conns, err := connEntries(cfg, opts)
	if err != nil {
		return nil, err
	}
	return &Bridge{cfg: cfg, opts: opts, conns: conns, reloads: make(chan reloadRequest)}, nil
}

// connEntries checks every connection of cfg against the platforms.
func connEntries(cfg *config.Config, opts Options) ([]connEntry, error) {
	var conns []connEntry
	var errs []error
	for _, c := range cfg.Connection {
		if c.Platform == "" {
			continue // config.Validate reports it
		}
		f, ok := opts.Registry[c.Platform]
		if !ok {
			errs = append(errs, fmt.Errorf("config: connection %q: platform %q is not one of %s", c.Name, c.Platform, strings.Join(knownPlatforms(opts.Registry), ", ")))
			continue
		}
		if _, err := connectorConfig(c, f, opts.LookupEnv); err != nil {
			errs = append(errs, config.Lines(fmt.Sprintf("config: connection %q: ", c.Name), err))
			continue
		}
		conns = append(conns, connEntry{cfg: c, factory: f})
	}
	return conns, errors.Join(errs...)
}

// connectorConfig is what connection c's connector gets (connectorSettings),
// checked by the platform and with every secret resolved once.
func connectorConfig(c config.Connection, f connector.Factory, lookupEnv func(string) (string, bool)) (connector.Config, error) {
	ccfg, err := connectorSettings(c, f, lookupEnv)
	if err != nil {
		return connector.Config{}, err
	}
	secrets := ccfg.Secrets
	var errs []error
	if f.Check != nil {
		errs = append(errs, f.Check(ccfg))
	}
	for _, name := range secrets.Names() {
		if _, err := secrets.Get(name); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return connector.Config{}, err
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

// Run serves HTTP at once, starts NATS (embedded when no URL is set),
// provisions the streams and runs every enabled connection until ctx ends,
// then drains in-flight work within ShutdownTimeout. While it runs,
// [Bridge.Reload] may change its connections. It returns the first fatal
// error.
func (b *Bridge) Run(ctx context.Context) error {
	log := b.opts.Log
	cfg := b.cfg
	h := &httpServer{started: time.Now().UTC(), pprof: cfg.HTTP.PProf, target: natsbus.RedactURL(cfg.NATS.URL)}
	if cfg.NATS.URL == "" {
		h.target = "the embedded server"
	}
	m := newMetrics(b.opts.Version, h.natsConnected)
	board := newStatusBoard(m.setState)
	h.board, h.m = board, m
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(rctx)
	// The connections (see runner): started by running.start, ended once
	// their context (from gctx) ended.
	var runners sync.WaitGroup
	fail := func(err error) error {
		cancel()
		runners.Wait()
		return errors.Join(err, g.Wait())
	}

	// HTTP first: /healthz answers from the first moment and /readyz says
	// what the bridge waits for, even while NATS cannot be reached.
	addr := ""
	if cfg.HTTP.Listen != "none" {
		ln, err := net.Listen("tcp", cfg.HTTP.Listen)
		if err != nil {
			return fmt.Errorf("http: %w", err)
		}
		addr = ln.Addr().String()
		g.Go(func() error {
			if err := h.serve(gctx, ln); err != nil {
				return fmt.Errorf("http: %w", err)
			}
			return nil
		})
		log.Info().Str("http", addr).Msg("serving health, status and metrics")
	}

	var srv *natsbus.Embedded
	var embedded *server.Server
	if cfg.NATS.URL == "" {
		var err error
		srv, err = natsbus.StartEmbedded(natsbus.EmbeddedOptions{
			Listen: cfg.NATS.Embedded.Listen, StoreDir: cfg.NATS.Embedded.StoreDir, MaxStore: int64(cfg.NATS.Embedded.MaxStore),
		}, log)
		if err != nil {
			return fail(err)
		}
		defer srv.Shutdown()
		embedded = srv.Server
	}
	nopts, err := b.natsOptions(embedded)
	if err != nil {
		return fail(err)
	}
	// The shared Mux hears of reconnects: parked consumers catch up on what
	// was published meanwhile (see shared).
	mux := natsbus.NewMux(0)
	idle := tick.New(idleWake) // and so do the command engines on the wheel (see shared)
	nopts.Reconnected = func() {
		mux.Reconnected()
		idle.TickAll()
	}
	nc, err := natsbus.Connect(gctx, nopts, log)
	if err != nil {
		return fail(err)
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
	// An async publish whose acknowledgement never comes (a stream leader
	// lost with the message) fails after publishAckTimeout and is published
	// again, instead of holding its connection's events for ever. Each
	// connection's publishWindow bounds its unacknowledged publishes (they
	// are held in its settler either way); the client-wide cap is only a
	// backstop, set well above what a few hundred busy connections have out:
	// at the cap a publish stalls (up to 200ms) and then goes out
	// synchronously, which stalled 100 busy connections in the inbound
	// bench at the former cap of 4096.
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(publishMaxPending), jetstream.WithPublishAsyncTimeout(publishAckTimeout))
	if err != nil {
		return fail(fmt.Errorf("jetstream: %w", err))
	}
	clientURL := cfg.NATS.URL
	if srv != nil {
		clientURL = natsbus.ClientURL(srv)
	}
	h.bus.Store(&natsHandles{nc: nc, js: js, natsURL: natsbus.RedactURL(clientURL)})
	if srv != nil {
		g.Go(func() error { srv.KeepJetStream(gctx, time.Second); return nil })
	}

	if err := b.ensureStreams(gctx, js, b.conns); err != nil {
		return fail(err)
	}
	// Each bucket is retried like the streams: on a NATS cluster still
	// electing leaders (every replica starting at once) a create times out.
	var ls *leases
	err = b.untilReady(gctx, "lease bucket", func() (err error) {
		ls, err = openLeases(gctx, js, nc, cfg.NATS.Prefix, b.owner(), cfg.Lease.TTL.D(), cfg.NATS.Replicas)
		return err
	})
	if err != nil {
		return fail(err)
	}
	defer ls.close()
	// Connections start at the dial rate once their lease is held (see
	// leases.pace).
	ls.starts = connector.NewDialLimiter(cfg.Dial.Rate, cfg.Dial.Burst)
	ls.ramp = newGCRamp(b.opts.StartGCPercent)
	defer ls.ramp.stop()
	log.Info().Str("owner", ls.self.Owner).Str("instance", ls.self.Instance).Msg("lease identity")
	var stored *publishedStore
	err = b.untilReady(gctx, "published bucket", func() (err error) {
		stored, err = openPublished(gctx, js, cfg.NATS.Prefix, cfg.NATS.EventsMaxAge.D(), cfg.NATS.Replicas)
		return err
	})
	if err != nil {
		return fail(err)
	}
	var state jetstream.KeyValue
	err = b.untilReady(gctx, "state bucket", func() (err error) {
		state, err = openStateBucket(gctx, js, cfg.NATS.Prefix, cfg.NATS.Replicas)
		return err
	})
	if err != nil {
		return fail(err)
	}
	var cl *cluster
	err = b.untilReady(gctx, "members bucket", func() (err error) {
		if cl, err = openCluster(gctx, js, ls.kv, cfg.NATS.Prefix, ls.self, cfg.Lease.TTL.D(), cfg.NATS.Replicas, log); err != nil {
			return err
		}
		return cl.heartbeat(gctx)
	})
	if err != nil {
		return fail(err)
	}
	synced := make(chan struct{})
	g.Go(func() error { cl.run(gctx, synced); return nil })
	g.Go(func() error { cl.moves(gctx); return nil })      // hands over connections assigned elsewhere
	g.Go(func() error { ls.renew(gctx, log); return nil }) // renews every lease held here
	select {                                               // the first assignment counts the processes already running
	case <-synced:
	case <-gctx.Done():
		return fail(gctx.Err())
	}
	// The buckets every connection's return path shares, opened once (each
	// open is a stream update the server checks against every stream's
	// subjects), before the bridge says it is ready.
	var executed jetstream.KeyValue
	err = b.untilReady(gctx, "executed-ids bucket", func() (err error) {
		executed, err = cmdexec.OpenExecuted(gctx, js, cfg.NATS.Prefix, cfg.NATS.DuplicateWindow.D(), cfg.NATS.Replicas)
		return err
	})
	if err != nil {
		return fail(err)
	}
	var commands jetstream.Stream
	err = b.untilReady(gctx, "commands stream", func() (err error) {
		commands, err = js.Stream(gctx, subjects.StreamName(cfg.NATS.Prefix, subjects.StreamCommands))
		return err
	})
	if err != nil {
		return fail(err)
	}
	var dstores *dispatch.Stores
	if len(cfg.Dispatch) > 0 {
		err = b.untilReady(gctx, "dispatch buckets", func() (err error) {
			dstores, err = dispatch.OpenStores(gctx, js, cfg.NATS.Prefix, cfg.NATS.EventsMaxAge.D(), cfg.NATS.Replicas)
			return err
		})
		if err != nil {
			return fail(err)
		}
	}
	h.cluster.Store(cl)
	h.ready.Store(true)

	// Stopped after every connection ended (fail and the end of Run wait
	// for g first) and before the NATS connection closes.
	sh := startShared(mux, idle)
	defer sh.close()
	sh.executed, sh.dispatch, sh.commands, sh.state = executed, dstores, commands, state
	rt := &running{b: b, runners: &runners, js: js, nc: nc, m: m, board: board, ls: ls, cl: cl, stored: stored, state: state, shared: sh,
		httpClient: connector.NewHTTPClient(), // one pool for every connection's REST calls
		dials:      connector.NewDialLimiter(cfg.Dial.Rate, cfg.Dial.Burst),
		catchUp:    connector.NewGate(cfg.CatchUp.Parallel),
		conns:      map[string]*runningConn{}}
	var enabled []string
	for _, ce := range b.conns {
		if ce.cfg.IsEnabled() {
			enabled = append(enabled, ce.cfg.Name)
		}
	}
	cl.setConns(enabled)
	for i := range b.conns {
		if err := rt.start(gctx, &b.conns[i]); err != nil {
			cancel()
			rt.wakeAll() // parked connections see gctx's end
			return fail(err)
		}
	}
	if b.opts.OnReady != nil && gctx.Err() == nil {
		b.opts.OnReady(Info{NATSClientURL: clientURL, HTTPAddr: addr, Conn: nc})
	}
	log.Info().Str("nats", natsbus.RedactURL(clientURL)).Str("http", addr).Int("connections", len(b.conns)).Msg("bridge running")
	for done := false; !done; {
		select {
		case req := <-b.reloads:
			req.reply <- rt.reload(gctx, req)
		case <-gctx.Done():
			done = true
		}
	}
	rt.wakeAll() // parked connections see gctx's end
	runners.Wait()
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
// the platform session, the command executor and managed dispatch. It tries
// for the lease only while the connection is assigned here (see cluster),
// and hands the connection over, releasing its lease, when the assignment
// moves to another live process: one connection at a time per process.
func (b *Bridge) runConnection(ctl *connCtl, ls *lease, cl *cluster, s *supervisor, parts []returnPart) error {
	for {
		f := s.parked // a session parked (see runner): go on with it
		s.parked = nil
		if f == nil {
			if f = b.startTerm(ctl, ls, cl, s, parts); f == nil {
				return nil // stopped
			}
		}
		if f.paced {
			if err := s.run(f.lctx); errors.Is(err, errParked) {
				s.parked = f
				return errParked
			}
		}
		if !b.endSession(ctl, ls, cl, s, f) {
			return nil
		}
	}
}

// startTerm waits for the connection's lease, then for its start pace, and
// starts its return path; nil when the connection stops first.
func (b *Bridge) startTerm(ctl *connCtl, ls *lease, cl *cluster, s *supervisor, parts []returnPart) *leaseTerm {
	// The term's context, made first: a stop ends the wait for the lease
	// too. The connection runs until it ends: the connection stops, the
	// process-wide renewals lose its lease, or the move check assigns it
	// elsewhere.
	lctx, cancel := ctl.phase()
	may := func() (bool, string) {
		if cl.mayTake(s.name) {
			return true, ""
		}
		return false, cl.holderOf(s.name).String()
	}
	err := ls.acquire(lctx, may, cl.woken, func(holder string) {
		s.board.setHolder(s.name, holder, 0, time.Time{})
		s.m.setLeaseHeld(s.name, false)
		s.board.set(s.name, StateStandby, nil)
		if holder == "" {
			s.log.Info().Str("assigned", cl.assignee(s.name)).Msg("connection assigned to another process; standing by")
		} else {
			s.log.Info().Str("holder", holder).Msg("another process holds this connection; standing by")
		}
	})
	if err != nil {
		cancel()
		return nil
	}
	s.board.setHolder(s.name, ls.l.self.String(), ls.revision(), ls.since)
	s.m.setLeaseHeld(s.name, true)
	s.m.handover(s.name, "acquired")
	s.log.Info().Uint64("revision", ls.revision()).Msg("lease acquired")
	s.pub.sys(lctx, subjects.LifecycleLeaseAcquired, map[string]any{"owner": ls.l.self.Owner, "instance": ls.l.self.Instance})
	f := &leaseTerm{lctx: lctx, cancel: cancel}
	// A parked connection (see runner) has no goroutine or watch on lctx:
	// whoever ends the term wakes it, after the end.
	end := func() {
		cancel()
		ctl.wake()
	}
	f.unkeep = ls.keep(func(error) { end() })
	f.unwatch = cl.watchMove(s.name, end)
	// Connections start at the process's start pace (see leases.pace),
	// the lease renewed meanwhile. The return path starts without a
	// goroutine of its own while idle; the session runs on the runner's
	// goroutine (the supervisor and the connection's runner are one),
	// which ends while the connection idles (see runner). A stopped
	// connection shows on /status; its commands still run until lctx ends.
	if ls.l.pace(lctx) == nil {
		f.paced = true
		f.started = startReturnPath(lctx, parts, *s.log)
	}
	return f
}

// endSession ends a connection's run under its lease, once its context
// ended: the return path drains, and the lease is released (handing the
// connection over when it moved) or, lost, given up. It reports whether
// runConnection goes on (trying for the lease again) rather than returns.
func (b *Bridge) endSession(ctl *connCtl, ls *lease, cl *cluster, s *supervisor, f *leaseTerm) (again bool) {
	<-f.lctx.Done()
	drainReturnPath(f.started)
	f.cancel()
	lost, moved := f.unkeep(), f.unwatch()
	s.m.setLeaseHeld(s.name, false)
	s.board.natsError(s.name, "publish", nil) // nothing publishes here now
	if lost == nil {
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctl.parent), 2*time.Second)
		ls.release(rctx)
		rcancel()
		if moved == "" {
			s.m.handover(s.name, "released")
			return false
		}
		s.m.handover(s.name, "moved")
		s.log.Info().Str("to", moved).Msg("connection assigned to another process; lease released")
		s.board.set(s.name, StateStandby, nil)
		hctx, hcancel := ctl.phase()
		cl.handOver(hctx, s.name)
		hcancel()
		return ctl.err() == nil
	}
	if moved != "" {
		<-cl.handoff
	}
	ls.stale()
	s.m.handover(s.name, "lost")
	s.log.Warn().Err(lost).Msg("lease lost; the connection stopped here")
	s.board.set(s.name, StateStandby, lost)
	ectx, ecancel := ctl.phase()
	s.pub.sys(ectx, subjects.LifecycleLeaseLost, map[string]any{"reason": lost.Error()})
	ecancel()
	return true
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

// untilReady runs step until it succeeds or ctx ends, waiting between
// tries as ensureStreams does; what names the step in the log.
func (b *Bridge) untilReady(ctx context.Context, what string, step func() error) error {
	bo := retry.Policy{Initial: 500 * time.Millisecond, Max: 15 * time.Second}.Start()
	for {
		err := step()
		if err == nil || ctx.Err() != nil {
			return err
		}
		wait := bo.Next()
		b.opts.Log.Warn().Err(err).Str("step", what).Int64("retry_in_ms", wait.Milliseconds()).Msg("JetStream not ready; retrying")
		if !retry.Sleep(ctx, wait) {
			return err
		}
	}
}

// ensureStreams creates or updates the streams for conns, retrying until
// ctx ends.
func (b *Bridge) ensureStreams(ctx context.Context, js jetstream.JetStream, conns []connEntry) error {
	bo := retry.Policy{Initial: 500 * time.Millisecond, Max: 15 * time.Second}.Start()
	for {
		err := b.updateStreams(ctx, js, conns, len(b.cfg.Dispatch))
		if err == nil || ctx.Err() != nil {
			return err
		}
		wait := bo.Next()
		b.opts.Log.Warn().Err(err).Int64("retry_in_ms", wait.Milliseconds()).Msg("streams not ready; retrying")
		if !retry.Sleep(ctx, wait) {
			return err
		}
	}
}

// updateStreams makes one attempt at the streams for conns: the commands
// stream captures the commands of exactly these connections.
func (b *Bridge) updateStreams(ctx context.Context, js jetstream.JetStream, conns []connEntry, dispatchRules int) error {
	n := b.cfg.NATS
	o := natsbus.StreamOptions{
		Prefix: n.Prefix, Replicas: n.Replicas, DuplicateWindow: n.DuplicateWindow.D(),
		EventsMaxAge: n.EventsMaxAge.D(), CommandsMaxAge: n.CommandsMaxAge.D(), DLQMaxAge: n.DLQMaxAge.D(),
		// Every configured connection, enabled or not: commands for any
		// other are refused at publish.
		Connections:    make([]natsbus.StreamConn, 0, len(conns)),
		EventConsumers: dispatchRules,
	}
	for _, ce := range conns {
		o.Connections = append(o.Connections, natsbus.StreamConn{Platform: ce.factory.Platform, Name: ce.cfg.Name})
	}
	dropped, err := natsbus.DroppedCommandSubjects(ctx, js, o)
	if err != nil {
		return err
	}
	if len(dropped) > 0 {
		b.opts.Log.Warn().Strs("subjects", dropped).
			Msg("commands stream: these subjects are no longer captured (connections this config does not have); their commands are refused from now on, those already stored stay until commands_max_age")
	}
	return natsbus.EnsureStreams(ctx, js, o)
}

func (b *Bridge) natsOptions(srv *server.Server) (natsbus.Options, error) {
	o, err := NATSOptions(b.cfg.NATS, b.opts.LookupEnv)
	o.Embedded = srv
	return o, err
}
