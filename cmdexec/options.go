package cmdexec

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/trace"

	"github.com/bridgeworks/bridge/ackflow"
	"github.com/bridgeworks/bridge/claimcheck"
	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/consume"
	"github.com/bridgeworks/bridge/internal/tick"
	"github.com/bridgeworks/bridge/natsbus"
	"github.com/bridgeworks/bridge/subjects"
)

// Options configure an [Executor]. JS, NC, Platform, Conn and Exec are
// required; every other zero field takes the default its comment states.
type Options struct {
	JS       jetstream.JetStream // the COMMANDS stream, the consumer, the KV bucket and the DLQ
	NC       *nats.Conn          // results and RPC (core NATS)
	Prefix   string              // subject prefix, default "bridge"
	Platform string              // the platform's subject token, e.g. "band"
	Conn     string              // the connection's name, [a-z0-9_-]{1,64}
	Exec     connector.Executor  // makes one attempt at a command

	// MaxParallelRooms bounds the rooms executing at once (the engine's
	// MaxParallel; each room runs one command at a time), default 16.
	MaxParallelRooms int
	// Policy bounds in-process retries; zero fields default to 8 attempts,
	// 200ms doubling to 30s, equal jitter (ackflow.DefaultPolicy).
	Policy ackflow.Policy
	// AckWait is the consumer's ack wait, default 10s; messages in hand get
	// an InProgress every AckWait/3. After a restart of the bridge's NATS
	// server the previous run's messages come back only after it (the
	// server does not keep hand-back delays across its restart), so it
	// bounds how long a restarted bridge waits before resuming commands.
	AckWait time.Duration
	// Log receives the executor's logs; never payloads. The executor adds
	// no fields of its own: give it a logger naming the connection (the
	// bridge passes each connection's, with its connection and platform).
	Log zerolog.Logger
	// Metrics are the process's command metrics ([NewMetrics]), shared by
	// every executor; nil means none.
	Metrics *Metrics
	// Tracer traces each command, continuing the trace of its message's
	// traceparent or of Do's context; nil means none.
	Tracer trace.Tracer

	// MaxAckPending bounds the commands in hand (the consumer's
	// MaxAckPending and the executor's own bound), default 1024.
	MaxAckPending int
	// ExecutedTTL is how long an executed command id is remembered, default
	// 20m. Keep it at least the COMMANDS stream's duplicate window.
	ExecutedTTL time.Duration
	// StreamDuplicates is the COMMANDS stream's duplicate window when the
	// caller knows it (the bridge sets the stream up); 0: Run reads it from
	// the stream's info, which lists every connection's subjects.
	StreamDuplicates time.Duration
	// Executed is the executed-ids bucket ([OpenExecuted]) when the caller
	// opened it; nil: the executor opens it at start.
	Executed jetstream.KeyValue
	// Replicas of the executed-ids KV bucket, default 1.
	Replicas int
	// DrainTimeout bounds how long running commands may take to finish once
	// Run's ctx ends, default 10s; then their calls are cancelled.
	DrainTimeout time.Duration
	// RPCWorkers is the number of RPC requests handled at once, default 16.
	// Four times as many may wait; beyond that a request is refused at once
	// with an "unavailable" result.
	RPCWorkers int
	// FetchWait is the expiry of each pull request, default 500ms. Run takes up
	// to this long to stop taking messages after its ctx ends.
	FetchWait time.Duration
	// Payloads keeps the bodies of dead letters too large for one NATS
	// message; default a store for Conn with claimcheck's defaults.
	Payloads *claimcheck.Store
	// Fence, when set, is asked before every attempt at a command; an
	// error (the process's lease on the connection is no longer valid)
	// hands the command back unexecuted, for the connection's new holder.
	Fence func() error
	// Heartbeat, when set, is the process's shared in-progress heartbeat
	// (consume.Options.Heartbeat; its interval at most AckWait/3); nil: the
	// executor's consumer runs one of its own.
	Heartbeat *ackflow.Heartbeat
	// Mux, when set, is the process's shared delivery of core
	// subscriptions; the RPC subscription goes through it, so an idle
	// executor holds no goroutine for it. The Mux must run (natsbus.Mux.Run)
	// for as long as the executor does. Nil: Run runs a Mux of its own.
	Mux *natsbus.Mux
	// IdleWheel, when set, is the process's wheel for the parked
	// engines' safety wake-ups (consume.Options.IdleWheel); nil: a timer
	// per executor.
	IdleWheel *tick.Wheel
	// Release, when set, lets the executor's consumer go while the
	// connection takes no command, and come back when one is stored (see
	// consume.Release): an idle connection then costs the NATS server no
	// consumer. Nil: the consumer stays for as long as the executor runs.
	Release *consume.Release
	// InactiveThreshold, when set, has the server delete the consumer
	// after that long with no pull or ack: the consumer of a connection
	// removed from the config goes by itself. Set it to at least the
	// COMMANDS stream's max age: a consumer created again from the start
	// of the stream then finds only commands nobody ran (everything its
	// predecessor took has expired). Zero: kept until deleted.
	InactiveThreshold time.Duration
}

func (o *Options) setDefaults() {
	if o.Prefix == "" {
		o.Prefix = subjects.DefaultPrefix
	}
	if o.MaxParallelRooms <= 0 {
		o.MaxParallelRooms = 16
	}
	o.Policy = o.Policy.WithDefaults()
	if o.AckWait <= 0 {
		o.AckWait = 10 * time.Second
	}
	if o.MaxAckPending <= 0 {
		o.MaxAckPending = 1024
	}
	if o.ExecutedTTL <= 0 {
		o.ExecutedTTL = 20 * time.Minute
	}
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = 10 * time.Second
	}
	if o.RPCWorkers <= 0 {
		o.RPCWorkers = 16
	}
	if o.FetchWait <= 0 {
		o.FetchWait = 500 * time.Millisecond
	}
}

// validate checks the fields a Family shares.
func (o *Options) validate() error {
	var errs []error
	if o.JS == nil {
		errs = append(errs, errors.New("JS is nil"))
	}
	if o.NC == nil {
		errs = append(errs, errors.New("NC is nil"))
	}
	if err := subjects.ValidatePrefix(o.Prefix); err != nil {
		errs = append(errs, err)
	}
	if !subjects.IsPlatformName(o.Platform) {
		errs = append(errs, fmt.Errorf("platform %q is not a lower-case name", o.Platform))
	}
	return errors.Join(errs...)
}

// Executor executes the commands of one connection. Build it with [New]
// or [Family.New]; run it with [Executor.Start] and [Executor.Drain], or
// [Executor.Run]; [Executor.Do] may be called at any time, also without
// Run.
type Executor struct {
	f    *Family       // the options it shares
	o    *Options      // &f.o
	conn subjects.Conn // the connection's subjects; conn.Name is Options.Conn
	// The connection's own options (Options fields of the same name).
	exec     connector.Executor
	log      *zerolog.Logger // the caller's (Conn.Log): a copy is 112 bytes
	fence    func() error
	release  *consume.Release
	payloads *claimcheck.Store

	holds   holds    // rooms resting after a cooldown
	m       *metrics // nil without Options.Metrics
	running atomic.Bool
	act     *active // set by Start, taken by Drain

	kvMu sync.Mutex
	kv   jetstream.KeyValue // set once the bucket exists

	// firstLookup: a first delivery may repeat an executed id, because the
	// store remembers ids longer than the stream's duplicate window drops
	// them. Otherwise only redeliveries ask the store.
	firstLookup atomic.Bool
}

// Family is the options the executors of many connections share: all of
// [Options] but a connection's own ([Conn]). Each executor built by
// [Family.New] keeps a pointer to them (and to one consumer engine
// template, with Options.Mux), where [New] copies them per executor
// (about 1 KiB per connection, with the engine's).
type Family struct {
	o          Options
	tmpl       *consume.Template // the engines' shared options; nil without Options.Mux
	bucketName string            // BucketName(o.Prefix)
}

// NewFamily checks o and fills in defaults; o's per-connection fields (see
// [Conn]) are ignored. It does no I/O.
func NewFamily(o Options) (_ *Family, err error) {
	defer wrapErr(&err, "cmdexec: %s", o.Platform)
	return newFamily(o)
}

func newFamily(o Options) (_ *Family, err error) {
	o.Conn, o.Exec, o.Log, o.Fence, o.Release, o.Payloads = "", nil, zerolog.Logger{}, nil, nil, nil
	o.setDefaults()
	if err := o.validate(); err != nil {
		return nil, err
	}
	f := &Family{o: o, bucketName: BucketName(o.Prefix)}
	if o.Mux != nil {
		if f.tmpl, err = consume.NewTemplate(f.engineOptions(o.Mux)); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// Conn is one connection's part of an executor's options: each field is
// the [Options] field of the same name (Name is Conn; Log is shared with
// the caller, not copied: nil logs nothing). Name and Exec are required.
type Conn struct {
	Name     string
	Exec     connector.Executor
	Log      *zerolog.Logger
	Fence    func() error
	Release  *consume.Release
	Payloads *claimcheck.Store
}

func (c *Conn) check() error {
	var errs []error
	if c.Exec == nil {
		errs = append(errs, errors.New("Exec is nil"))
	}
	if !subjects.IsConnName(c.Name) {
		errs = append(errs, fmt.Errorf("connection %q does not match [a-z0-9_-]{1,64}", c.Name))
	}
	return errors.Join(errs...)
}

// New builds the executor of connection c with the family's options. It
// does no I/O, as [New].
func (f *Family) New(c Conn) (_ *Executor, err error) {
	defer wrapErr(&err, "cmdexec: %s", c.Name)
	if err := c.check(); err != nil {
		return nil, err
	}
	return f.newExecutor(c), nil
}

func (f *Family) newExecutor(c Conn) *Executor {
	o := &f.o
	if c.Payloads == nil {
		c.Payloads = claimcheck.New(claimcheck.Options{JS: o.JS, Prefix: o.Prefix, Conn: c.Name, Replicas: o.Replicas})
	}
	if c.Log == nil {
		c.Log = new(zerolog.Nop())
	}
	e := &Executor{f: f, o: o, conn: subjects.Conn{Prefix: o.Prefix, Platform: o.Platform, Name: c.Name},
		exec: c.Exec, log: c.Log, fence: c.Fence, release: c.Release, payloads: c.Payloads}
	if o.Metrics != nil {
		e.m = newMetrics(o.Metrics, o.Platform, c.Name, c.Exec)
	}
	return e
}

// New checks o and fills in defaults. It does no I/O: the consumer and the
// KV bucket are created (or updated) by Run, and the bucket on first use by
// Do. Executors of many connections sharing their options take less
// memory built from one [Family].
func New(o Options) (_ *Executor, err error) {
	defer wrapErr(&err, "cmdexec: %s", o.Conn)
	c := Conn{Name: o.Conn, Exec: o.Exec, Log: &o.Log, Fence: o.Fence, Release: o.Release, Payloads: o.Payloads}
	f, ferr := newFamily(o)
	if err := errors.Join(ferr, c.check()); err != nil {
		return nil, err
	}
	return f.newExecutor(c), nil
}

// ConsumerName is the durable consumer of conn's commands.
func ConsumerName(conn string) string { return "cmd_" + conn }

// BucketName is the KV bucket of executed command ids under prefix:
// BRIDGE_EXECUTED for the default prefix.
func BucketName(prefix string) string { return subjects.StreamName(prefix, "EXECUTED") }

// wrapErr prefixes *err once with the operation; used with defer on named
// results.
func wrapErr(err *error, format string, args ...any) {
	if *err != nil {
		*err = fmt.Errorf(format+": %w", append(args, *err)...)
	}
}
