package bridge

import (
	"cmp"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/trace"

	"github.com/bridgeworks/bridge/ackflow"
	"github.com/bridgeworks/bridge/claimcheck"
	"github.com/bridgeworks/bridge/cmdexec"
	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/consume"
	"github.com/bridgeworks/bridge/dispatch"
	"github.com/bridgeworks/bridge/internal/tick"
	"github.com/bridgeworks/bridge/natsbus"
	"github.com/bridgeworks/bridge/retry"
	"github.com/bridgeworks/bridge/tracing"
)

// returnPart is one part of a connection's return path: the command
// executor or a dispatch rule. Start returns at once; Drain is called once
// the context given to Start has ended (see runConnection).
type returnPart interface {
	Start(ctx context.Context) error
	Drain()
}

// returnPath builds a connection's command executor (durable commands and
// RPC) and its managed-dispatch rule, if any. They share the process's
// heartbeat and subscription mux (see shared), so an idle one holds no
// goroutine.
func (b *Bridge) returnPath(js jetstream.JetStream, nc *nats.Conn, sh *shared, m *metrics, ce connEntry, c connector.Connector, cc *claimcheck.Store, fence func() error, log *zerolog.Logger) ([]returnPart, error) {
	ex, ok := c.(connector.Executor)
	if !ok {
		log.Info().Msg("platform takes no commands")
		return nil, nil
	}
	n := b.cfg.NATS
	fam, err := sh.family(familyKey{ce.factory.Platform, ce.cfg.MaxParallelRooms, ce.cfg.CommandMaxAttempts, ce.cfg.CommandBackoffMax.D()}, func(k familyKey) cmdexec.Options {
		return cmdexec.Options{
			JS: js, NC: nc, Prefix: n.Prefix, Platform: k.platform,
			MaxParallelRooms: k.maxParallelRooms,
			Policy:           ackflow.Policy{MaxAttempts: k.maxAttempts, Retry: retry.Policy{Max: k.backoffMax}},
			ExecutedTTL:      n.DuplicateWindow.D(), StreamDuplicates: n.DuplicateWindow.D(), Replicas: n.Replicas, DrainTimeout: b.opts.ShutdownTimeout,
			Metrics: m.cmd, Tracer: b.tracer(),
			Heartbeat: sh.heartbeat, Mux: sh.mux, Executed: sh.executed, IdleWheel: sh.idle,
			InactiveThreshold: n.CommandsMaxAge.D(),
		}
	})
	if err != nil {
		return nil, fmt.Errorf("connection %q: %w", ce.cfg.Name, err)
	}
	exec, err := fam.New(cmdexec.Conn{Name: ce.cfg.Name, Exec: ex, Log: log, Payloads: cc, Fence: fence,
		Release: &consume.Release{After: cmp.Or(b.opts.CommandsReleaseAfter, commandsReleaseAfter), Stream: sh.commands, Cursor: newCommandCursor(sh.state, ce.cfg.Name, sh.commands.CachedInfo().Created, fence, log), Fence: fence},
	})
	if err != nil {
		return nil, fmt.Errorf("connection %q: %w", ce.cfg.Name, err)
	}
	parts := []returnPart{exec}
	tracker, _ := c.(connector.ProcessingTracker) // nil: the platform keeps no processing state
	for _, r := range b.cfg.Dispatch {
		if r.Connection != ce.cfg.Name {
			continue
		}
		d, err := dispatch.New(dispatch.Options{
			JS: js, NC: nc, Prefix: n.Prefix, Platform: ce.factory.Platform, Conn: ce.cfg.Name, Exec: exec,
			Events: r.Events, Tracker: tracker, Timeout: r.Timeout.D(), MaxAttempts: r.MaxAttempts, MaxInFlightPerRoom: r.MaxInFlightPerRoom,
			BackoffInitial: r.BackoffInitial.D(), BackoffMax: r.BackoffMax.D(), DrainTimeout: b.opts.ShutdownTimeout,
			Start: r.Start, DoneTTL: n.EventsMaxAge.D(), Replicas: n.Replicas, Stores: sh.dispatch,
			Log: *log, Metrics: m.dispatch, Payloads: cc, Tracer: b.tracer(),
			Heartbeat: sh.heartbeat, Mux: sh.mux,
		})
		if err != nil {
			return nil, fmt.Errorf("dispatch for %q: %w", ce.cfg.Name, err)
		}
		parts = append(parts, d)
	}
	return parts, nil
}

// startReturnPath starts each part of a connection's return path; the
// ones that started are returned, for drainReturnPath. A part that cannot
// start is logged and left out: the session runs without it.
func startReturnPath(ctx context.Context, parts []returnPart, log zerolog.Logger) []returnPart {
	started := make([]returnPart, 0, len(parts))
	for _, p := range parts {
		if err := p.Start(ctx); err != nil {
			log.Error().Err(err).Msg("return path stopped")
			continue
		}
		started = append(started, p)
	}
	return started
}

// drainReturnPath drains the parts side by side, each within its
// DrainTimeout, and returns when all are drained; the last drains on the
// caller's goroutine.
func drainReturnPath(parts []returnPart) {
	if len(parts) == 0 {
		return
	}
	var wg sync.WaitGroup
	for _, p := range parts[:len(parts)-1] {
		wg.Go(p.Drain) // owned: waited for below
	}
	parts[len(parts)-1].Drain()
	wg.Wait()
}

// tracer is the bridge's tracer, or nil without a TracerProvider.
func (b *Bridge) tracer() trace.Tracer {
	if b.opts.TracerProvider == nil {
		return nil
	}
	return tracing.Tracer(b.opts.TracerProvider)
}

// shared is the work every connection's return path hands to one
// goroutine of the process instead of one of its own: the in-progress
// heartbeat of the messages in hand (ackflow.Heartbeat) and the delivery
// of the RPC and reply-inbox subscriptions (natsbus.Mux).
type shared struct {
	heartbeat *ackflow.Heartbeat
	mux       *natsbus.Mux
	// idle is the parked command engines' safety wake-up, every 30s
	// (consume.Options.IdleWake's default): one runtime timer for all.
	// Run's NATS reconnect handler ticks it all at once.
	idle *tick.Wheel
	// The buckets every return path uses, opened once per process (each
	// open is a stream update the server checks against every stream):
	// nil ones are opened by each executor or rule itself.
	executed jetstream.KeyValue
	dispatch *dispatch.Stores
	// The commands stream, for the check a released command consumer
	// makes, and the state bucket, where it keeps its cursor.
	commands jetstream.Stream
	state    jetstream.KeyValue
	stop     context.CancelFunc
	wg       sync.WaitGroup

	// The command executors' options, one copy per platform and per
	// connection setting they depend on (see family).
	famMu    sync.Mutex
	families map[familyKey]*cmdexec.Family
}

// familyKey is what tells the command executors' options of two
// connections apart: their platform and their command settings.
type familyKey struct {
	platform         string
	maxParallelRooms int
	maxAttempts      int
	backoffMax       time.Duration
}

// family returns the executors' options for k, made with opts the first
// time: every connection with the same platform and command settings
// shares one copy (a copy per connection cost ~1 KiB with its engine's).
func (sh *shared) family(k familyKey, opts func(familyKey) cmdexec.Options) (*cmdexec.Family, error) {
	sh.famMu.Lock()
	defer sh.famMu.Unlock()
	if f := sh.families[k]; f != nil {
		return f, nil
	}
	f, err := cmdexec.NewFamily(opts(k))
	if err != nil {
		return nil, err
	}
	if sh.families == nil {
		sh.families = map[familyKey]*cmdexec.Family{}
	}
	sh.families[k] = f
	return f, nil
}

// commandsReleaseAfter is how long a connection takes no command before
// its command consumer is released (consume.Release).
const commandsReleaseAfter = 2 * time.Minute

// sharedBeat is the shared heartbeat's interval: a third of the executors'
// and dispatchers' AckWait (their default, 10s; the bridge sets none).
const sharedBeat = 10 * time.Second / 3

// idleWake is how often a parked command engine pulls anyway, for
// anything its doorbell missed.
const idleWake = 30 * time.Second

// startShared starts the shared goroutines, mux's delivery among them;
// close stops them, once every connection has ended.
func startShared(mux *natsbus.Mux, idle *tick.Wheel) *shared {
	ctx, stop := context.WithCancel(context.Background())
	sh := &shared{heartbeat: ackflow.NewHeartbeat(sharedBeat), mux: mux, idle: idle, stop: stop}
	sh.wg.Go(func() { sh.heartbeat.Run(ctx) }) // owned: close
	sh.wg.Go(func() { sh.mux.Run(ctx) })       // owned: close
	return sh
}

func (sh *shared) close() {
	sh.stop()
	sh.wg.Wait()
}
