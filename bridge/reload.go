package bridge

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/bridgeworks/bridge/config"
	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/retry"
)

// running is what Run shares with the connections it starts. It is made
// once NATS is up and used on Run's goroutine only: the first starts, and
// every reload after them.
type running struct {
	b          *Bridge
	runners    *sync.WaitGroup // one count per running connection (see runner); Run waits for them
	js         jetstream.JetStream
	nc         *nats.Conn
	m          *metrics
	board      *statusBoard
	ls         *leases
	cl         *cluster
	stored     *publishedStore
	state      jetstream.KeyValue
	httpClient *http.Client
	dials      *connector.DialLimiter // paces every connection's sockets ([dial])
	catchUp    *connector.Gate        // bounds every connection's catch-up reads ([catchup])
	shared     *shared                // heartbeat and subscription mux of every connection's return path
	conns      map[string]*runningConn
}

// runningConn is one configured connection as Run runs it.
type runningConn struct {
	entry   *connEntry // an element of Bridge.conns (not a copy: ~0.3 KiB per connection)
	ctl     *connCtl   // stops it; nil for a disabled connection
	done    sync.WaitGroup
	unwatch func() // unregisters the connector's own metrics
	failed  bool   // a reload could not start it: the next one tries again
}

// start runs connection ce (or shows it disabled) until ctx ends or a
// reload stops it.
func (rt *running) start(ctx context.Context, ce *connEntry) error {
	b, name, platform := rt.b, ce.cfg.Name, ce.factory.Platform
	if !ce.cfg.IsEnabled() {
		rt.board.add(name, platform, StateDisabled)
		rt.conns[name] = &runningConn{entry: ce}
		return nil
	}
	rt.board.add(name, platform, StateStarting)
	clog := b.opts.Log.Hook(&connLogHook{name: name, platform: platform})
	ls := rt.ls.lease(name)
	ccfg, err := connectorSettings(ce.cfg, ce.factory, b.opts.LookupEnv)
	if err != nil {
		return fmt.Errorf("connection %q: %w", name, err)
	}
	c, err := ce.factory.New(ccfg, connector.Deps{Log: clog, HTTPClient: rt.httpClient, State: newStateStore(rt.state, name, ls.fence),
		Dials: rt.dials, CatchUp: rt.catchUp})
	if err != nil {
		return fmt.Errorf("connection %q: %w", name, err)
	}
	cc := b.payloads(rt.js, name)
	s := &supervisor{
		name: name, platform: platform, c: c, board: rt.board, m: rt.m, log: &clog,
		reconnect: ccfg.Reconnect, retryAfterMax: ce.cfg.RetryAfterMax.D(), drain: b.opts.ShutdownTimeout,
		cooloff: ce.cfg.SupersedeCooloff.D(), refusedMax: ce.cfg.RefusedRetryMax.D(),
		pub: &publisher{js: rt.js, prefix: b.cfg.NATS.Prefix, platform: platform, conn: name, log: &clog, m: rt.m, board: rt.board, stored: rt.stored, cc: cc, tracer: b.tracer()},
	}
	unwatch := func() {}
	if sr, ok := c.(connector.StatsReporter); ok {
		unwatch = rt.m.watchStats(name, sr)
		rt.board.watch(name, sr)
	}
	s.pub.fence = ls.fence
	parts, err := b.returnPath(rt.js, rt.nc, rt.shared, rt.m, *ce, c, cc, ls.fence, &clog)
	if err != nil {
		unwatch()
		rt.m.forgetReturnPath(name)
		return err
	}
	ctl := &connCtl{parent: ctx}
	rc := &runningConn{entry: ce, ctl: ctl, unwatch: unwatch}
	rc.done.Add(1) // done once its run ended for good (see runner)
	rt.conns[name] = rc
	ls.health = func(err error) { rt.board.natsError(name, "lease", err) }
	r := newRunner(rt.runners, func() error { return b.runConnection(ctl, ls, rt.cl, s, parts) }, rc.done.Done)
	wake := r.wake
	ctl.wake, s.pub.wake = wake, wake
	r.wake()
	return nil
}

// connectorSettings is connection c's connector config: its settings table
// split into plain settings and secrets. connectorConfig checks it when the
// config is read; start makes it again for the connector, which keeps what
// it needs (the bridge keeping it too cost ~0.4 KiB per connection).
func connectorSettings(c config.Connection, f connector.Factory, lookupEnv func(string) (string, bool)) (connector.Config, error) {
	settings, secrets, err := connector.SplitSettings(c.Settings, f.Secrets, lookupEnv)
	if err != nil {
		return connector.Config{}, err
	}
	return connector.Config{
		Name: c.Name, Platform: c.Platform, Settings: settings, Secrets: secrets,
		RetryAfterMax: c.RetryAfterMax.D(),
		Reconnect:     retry.Policy{Initial: c.ReconnectInitial.D(), Max: c.ReconnectMax.D()},
	}, nil
}

// connLogHook adds a connection's name and platform to every event logged
// for it. A hook costs the connection a few dozen bytes where a logger
// context (Logger.With) reserves 500.
type connLogHook struct{ name, platform string }

func (h *connLogHook) Run(e *zerolog.Event, _ zerolog.Level, _ string) {
	e.Str("connection", h.name).Str("platform", h.platform)
}

// wakeAll wakes every connection's runner, once the bridge's context
// ended: a parked connection has no watch on it (see publisher.run).
func (rt *running) wakeAll() {
	for _, rc := range rt.conns {
		if rc.ctl != nil {
			rc.ctl.wake()
		}
	}
}

// stop ends the named connections, all at once, and waits for each to
// drain and release its lease.
func (rt *running) stop(names []string) {
	var wg sync.WaitGroup
	for _, n := range names {
		rc := rt.conns[n]
		delete(rt.conns, n)
		if rc == nil || rc.ctl == nil {
			continue
		}
		rc.ctl.stop()
		wg.Go(func() {
			rc.done.Wait()
			rc.unwatch()
			rt.m.forgetReturnPath(n)
		})
	}
	wg.Wait()
}

// ErrReloadIncomplete says a reload was applied but some connections it
// added or changed could not be started (each is shown failed on /status).
var ErrReloadIncomplete = errors.New("config reloaded, but not every connection started")

// reloadRequest carries a checked config to Run's loop.
type reloadRequest struct {
	cfg   *config.Config
	conns []connEntry
	reply chan error // buffered: Run never waits on a caller that gave up
}

// Reload makes the running bridge use cfg's connections and dispatch rules.
// A connection added is started, one removed is stopped (its lease
// released), one whose settings or dispatch rule changed is restarted;
// the others are not touched. cfg is checked first as at start (every
// platform's settings, every secret): a config with any mistake is refused
// and the running one kept. The sections read once at start (nats, http,
// lease, log, shutdown) keep their running values; a change to them is
// logged and takes effect at the next restart. Reload waits until Run has
// applied the config, or ctx ends. A connection that could not be started
// makes it return [ErrReloadIncomplete] with that connection's error.
func (b *Bridge) Reload(ctx context.Context, cfg *config.Config) error {
	conns, err := connEntries(cfg, b.opts)
	if err := errors.Join(config.Lines("config: ", cfg.Validate()), err); err != nil {
		return err
	}
	req := reloadRequest{cfg: cfg, conns: conns, reply: make(chan error, 1)}
	select {
	case b.reloads <- req:
	case <-ctx.Done():
		return fmt.Errorf("reload: bridge not running: %w", ctx.Err())
	}
	select {
	case err := <-req.reply:
		return err
	case <-ctx.Done():
		return fmt.Errorf("reload: %w (it goes on in the bridge)", ctx.Err())
	}
}

// restartOnly are the sections a reload does not change.
func restartOnly(old, next *config.Config) (changed []string) {
	for _, s := range []struct {
		name      string
		old, next any
	}{
		{"nats", old.NATS, next.NATS}, {"http", old.HTTP, next.HTTP}, {"lease", old.Lease, next.Lease},
		{"log", old.Log, next.Log}, {"shutdown", old.Shutdown, next.Shutdown},
		{"dial", old.Dial, next.Dial}, {"catchup", old.CatchUp, next.CatchUp},
	} {
		if !reflect.DeepEqual(s.old, s.next) {
			changed = append(changed, s.name)
		}
	}
	return changed
}

// reload applies req on Run's goroutine; see [Bridge.Reload].
func (rt *running) reload(ctx context.Context, req reloadRequest) error {
	b, log := rt.b, rt.b.opts.Log
	next := *req.cfg
	if kept := restartOnly(b.cfg, &next); len(kept) > 0 {
		log.Warn().Strs("sections", kept).Msg("config reload: these sections changed but are read only at start; they keep their running values until a restart")
		next.NATS, next.HTTP, next.Lease, next.Log, next.Shutdown = b.cfg.NATS, b.cfg.HTTP, b.cfg.Lease, b.cfg.Log, b.cfg.Shutdown
		next.Dial, next.CatchUp = b.cfg.Dial, b.cfg.CatchUp
	}
	rules := func(c *config.Config, name string) (out []config.Dispatch) {
		for _, d := range c.Dispatch {
			if d.Connection == name {
				out = append(out, d)
			}
		}
		return out
	}
	var added, removed, changed []string
	byName := map[string]connEntry{}
	for _, ce := range req.conns {
		byName[ce.cfg.Name] = ce
		old, ok := rt.conns[ce.cfg.Name]
		switch {
		case !ok:
			added = append(added, ce.cfg.Name)
		case old.failed || !reflect.DeepEqual(old.entry.cfg, ce.cfg) || old.entry.factory.Platform != ce.factory.Platform ||
			!reflect.DeepEqual(rules(b.cfg, ce.cfg.Name), rules(&next, ce.cfg.Name)):
			changed = append(changed, ce.cfg.Name)
		}
	}
	for name := range rt.conns {
		if _, ok := byName[name]; !ok {
			removed = append(removed, name)
		}
	}
	slices.Sort(removed)
	if len(added)+len(removed)+len(changed) == 0 {
		b.cfg = &next
		log.Info().Msg("config reloaded: no connection changed")
		return nil
	}
	// The commands stream captures exactly the configured connections:
	// update it before a new one runs. A failure refuses the reload.
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err := b.updateStreams(sctx, rt.js, req.conns, len(next.Dispatch))
	cancel()
	if err != nil {
		return fmt.Errorf("config reload refused, the running config is kept: streams: %w", err)
	}

	rt.stop(append(slices.Clone(removed), changed...))
	for _, n := range removed {
		rt.board.remove(n)
		rt.m.forget(n)
		log.Info().Str("connection", n).Msg("config reload: connection removed")
	}
	b.cfg, b.conns = &next, req.conns
	var enabled []string
	for _, ce := range req.conns {
		if ce.cfg.IsEnabled() {
			enabled = append(enabled, ce.cfg.Name)
		}
	}
	rt.cl.setConns(enabled)
	var errs []error
	for i := range req.conns {
		ce := &req.conns[i]
		n := ce.cfg.Name
		isNew, isChanged := slices.Contains(added, n), slices.Contains(changed, n)
		if !isNew && !isChanged {
			rt.conns[n].entry = ce // its equal in the new config: the old one is let go
			continue
		}
		if isChanged {
			rt.m.forget(n)
		}
		if err := rt.start(ctx, ce); err != nil {
			rt.conns[n] = &runningConn{entry: ce, failed: true}
			rt.board.add(n, ce.factory.Platform, StateFailed)
			rt.board.set(n, StateFailed, err)
			errs = append(errs, err)
			log.Error().Err(err).Str("connection", n).Msg("config reload: connection not started")
			continue
		}
		what := "config reload: connection added"
		if isChanged {
			what = "config reload: connection restarted (its config changed)"
		}
		log.Info().Str("connection", n).Msg(what)
	}
	log.Info().Strs("added", added).Strs("removed", removed).Strs("restarted", changed).
		Int("unchanged", len(req.conns)-len(added)-len(changed)).Msg("config reloaded")
	if len(errs) > 0 {
		return fmt.Errorf("%w:\n%w", ErrReloadIncomplete, errors.Join(errs...))
	}
	return nil
}
