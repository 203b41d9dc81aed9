package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/trace"

	"github.com/bridgeworks/bridge/ackflow"
	"github.com/bridgeworks/bridge/claimcheck"
	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/consume"
	"github.com/bridgeworks/bridge/natsbus"
	"github.com/bridgeworks/bridge/subjects"
)

// Doer executes one command with retries and returns its result
// (cmdexec.Executor.Do).
type Doer interface {
	Do(ctx context.Context, cmd connector.Command) subjects.Result
}

// Options configure a [Dispatcher]; JS, NC, Platform, Conn and Exec are
// required, other zero fields take the defaults their comments state.
type Options struct {
	JS       jetstream.JetStream
	NC       *nats.Conn
	Prefix   string // default "bridge"
	Platform string
	Conn     string
	Exec     Doer
	// Events are the event names dispatched; required. Names take the
	// contract's form (subjects.EventName) in the consumer's filters.
	Events []string
	// Tracker reports the processing state of dispatched events on the
	// platform, for the events it knows a platform message of; nil: no
	// processing-state calls.
	Tracker connector.ProcessingTracker
	// Timeout is how long an attempt waits for a worker's next reply,
	// default 120s; a "processing" reply restarts it.
	Timeout time.Duration
	// MaxAttempts bounds worker attempts (timeouts and failed-with-retry),
	// default 5.
	MaxAttempts int
	// MaxInFlightPerRoom bounds a room's messages out at once, default 1.
	MaxInFlightPerRoom int
	// BackoffInitial and BackoffMax shape the wait between attempts and
	// while no worker is subscribed, defaults 1s and 60s.
	BackoffInitial, BackoffMax time.Duration
	// MaxAckPending bounds the messages in hand, default 1024.
	MaxAckPending int
	// AckWait is the consumer's ack wait, default 10s (kept alive by
	// InProgress every AckWait/3). After a crash, the messages the crashed
	// run held come back after it, and the room's newer messages wait.
	AckWait time.Duration
	// DrainTimeout bounds how long attempts under way may finish after Run's
	// ctx ends, default 10s; the rest are redelivered later.
	DrainTimeout time.Duration
	// Start is where a new rule starts in the events stream: "new" (the
	// default: the first event stored after this bridge took the connection),
	// "all" (every event the stream keeps) or a duration (events stored that
	// long before the rule was first seen). It is recorded the first time
	// the rule runs and never moves after (see start.go).
	Start string
	// DoneTTL is how long finished events are remembered, default 168h: as
	// long as the events stream keeps them (nats.events_max_age).
	DoneTTL  time.Duration
	Replicas int // of the KV buckets, default 1
	// Stores are the dispatch buckets ([OpenStores]) when the caller opened
	// them; nil: the rule opens them at start.
	Stores  *Stores
	Log     zerolog.Logger
	Metrics *Metrics // the process's dispatch metrics (NewMetrics); nil: none
	// Tracer traces each dispatched event, continuing the trace of its
	// stored message; nil means none.
	Tracer trace.Tracer
	// Payloads keeps the event data of work requests and dead letters too
	// large for one NATS message; default a store for Conn with
	// claimcheck's defaults.
	Payloads *claimcheck.Store
	// Heartbeat, when set, is the process's shared in-progress heartbeat
	// (consume.Options.Heartbeat; its interval at most AckWait/3); nil: the
	// rule's consumer runs one of its own.
	Heartbeat *ackflow.Heartbeat
	// Mux, when set, delivers the workers' replies (the rule's reply-inbox
	// subscription) on the process's shared goroutine; it must run for as
	// long as the Dispatcher does. Nil: Run runs a Mux of its own.
	Mux *natsbus.Mux
}

func (o *Options) setDefaults() {
	if o.Prefix == "" {
		o.Prefix = subjects.DefaultPrefix
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.Timeout, 120*time.Second)
	def(&o.BackoffInitial, time.Second)
	def(&o.BackoffMax, 60*time.Second)
	def(&o.AckWait, 10*time.Second)
	def(&o.DrainTimeout, 10*time.Second)
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 5
	}
	if o.MaxInFlightPerRoom <= 0 {
		o.MaxInFlightPerRoom = 1
	}
	if o.MaxAckPending <= 0 {
		o.MaxAckPending = 1024
	}
	if o.Start == "" {
		o.Start = "new"
	}
	def(&o.DoneTTL, 168*time.Hour)
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.Payloads == nil && o.JS != nil {
		o.Payloads = claimcheck.New(claimcheck.Options{JS: o.JS, Prefix: o.Prefix, Conn: o.Conn})
	}
}

// Dispatcher runs one dispatch rule.
type Dispatcher struct {
	o    Options
	conn subjects.Conn
	log  zerolog.Logger
	m    *metrics

	// Worker replies arrive on one wildcard subscription, inbox.*, and are
	// routed to the attempt waiting on their token.
	inbox   string
	waitMu  sync.Mutex
	waiting map[string]*waiter
	// Extra replies dropped since the last log line about them, and when
	// that line was written (UnixNano): one line per extraLogEvery at most.
	extraDropped atomic.Int64
	extraLogged  atomic.Int64

	ready atomic.Bool // the engine has its consumer (tests read it)
	drain func()      // set by Start, taken by Drain

	starts, done jetstream.KeyValue // see start.go; set by Run
	doneSubject  string             // "$KV.<DoneBucket>.", the prefix of done's keys
	// replayTo is the last stream sequence stored before this run had to
	// create a consumer that had existed: events up to it may have run.
	replayTo atomic.Uint64
}

// New checks the options; it does no I/O.
func New(o Options) (*Dispatcher, error) {
	o.setDefaults()
	switch {
	case o.JS == nil || o.NC == nil || o.Exec == nil:
		return nil, errors.New("dispatch: JS, NC and Exec are required")
	case len(o.Events) == 0:
		return nil, errors.New("dispatch: Events is empty: name the events to dispatch")
	case !subjects.IsPlatformName(o.Platform) || !subjects.IsConnName(o.Conn):
		return nil, fmt.Errorf("dispatch: bad platform %q or connection %q", o.Platform, o.Conn)
	}
	if _, err := parseStart(o.Start); err != nil {
		return nil, fmt.Errorf("dispatch: %w", err)
	}
	m := newMetrics(o.Metrics, o.Conn)
	return &Dispatcher{o: o, conn: subjects.Conn{Prefix: o.Prefix, Platform: o.Platform, Name: o.Conn},
		log: o.Log.With().Str("dispatch", o.Conn).Logger(), m: m,
		inbox: o.NC.NewRespInbox(), waiting: map[string]*waiter{}, doneSubject: "$KV." + DoneBucket(o.Prefix) + "."}, nil
}

// ConsumerName is the durable consumer of a connection's dispatch rule.
func ConsumerName(conn string) string { return "dispatch_" + conn }

func (d *Dispatcher) consumerConfig() jetstream.ConsumerConfig {
	filters := make([]string, 0, len(d.o.Events))
	for _, e := range d.o.Events {
		filters = append(filters, d.conn.EventFilter(e))
	}
	return jetstream.ConsumerConfig{
		Durable:        ConsumerName(d.o.Conn),
		Description:    "bridge managed dispatch for " + d.o.Conn,
		FilterSubjects: filters,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	}
}

// Run is [Dispatcher.Start], then [Dispatcher.Drain] once ctx ends: it
// consumes and dispatches on the consumer engine (package consume) until
// ctx ends, then lets attempts under way finish within DrainTimeout and
// hands the rest back.
func (d *Dispatcher) Run(ctx context.Context) error {
	if err := d.Start(ctx); err != nil {
		return err
	}
	d.Drain()
	return nil
}

// Start subscribes the rule's reply inbox and starts its consumer engine,
// and returns at once (an error only for bad options or a failed
// subscription). While no event of the rule comes, a started Dispatcher
// holds no goroutine of its own (with Options.Mux and Options.Heartbeat).
// Once ctx ends, the caller calls [Dispatcher.Drain].
func (d *Dispatcher) Start(ctx context.Context) error {
	mux := d.o.Mux
	stopMux := func() {}
	if mux == nil {
		mux = natsbus.NewMux(0)
		muxCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		var bg sync.WaitGroup
		bg.Go(func() { mux.Run(muxCtx) }) // owned: stopped and waited for by Drain
		stopMux = func() {
			cancel()
			bg.Wait()
		}
	}
	sub, err := mux.QueueSubscribe(d.o.NC, d.inbox+".*", "", d.route)
	if err != nil {
		stopMux()
		return fmt.Errorf("dispatch: reply subscription: %w", err)
	}
	cfg := d.consumerConfig()
	eng, err := consume.Start(ctx, consume.Options{
		JS: d.o.JS, NC: d.o.NC, Stream: subjects.StreamName(d.o.Prefix, subjects.StreamEvents),
		Consumer: cfg,
		// Parked while no event of the rule comes; a published one rings.
		Doorbell:           cfg.FilterSubjects,
		Mux:                mux,
		RoomOf:             func(subject string) string { return d.conn.RoomToken(subjects.KindEvent, subject) },
		MaxInFlightPerRoom: d.o.MaxInFlightPerRoom,
		MaxAckPending:      d.o.MaxAckPending,
		AckWait:            d.o.AckWait,
		DrainTimeout:       d.o.DrainTimeout,
		Heartbeat:          d.o.Heartbeat,
		Setup:              d.openStores,
		Configure:          d.configure,
		Ready: func(*jetstream.ConsumerInfo, bool) {
			d.ready.Store(true)
			d.log.Info().Str("consumer", ConsumerName(d.o.Conn)).Strs("events", d.o.Events).Msg("managed dispatch running")
		},
		Log: d.log,
	}, d.handle)
	if err != nil {
		_ = mux.Unsubscribe(sub)
		stopMux()
		return fmt.Errorf("dispatch: %w", err)
	}
	d.drain = func() {
		eng.Drain()
		_ = mux.Unsubscribe(sub)
		d.ready.Store(false)
		stopMux()
	}
	return nil
}

// Drain waits until the context given to Start has ended, lets attempts
// under way finish within DrainTimeout, hands the rest back and ends the
// reply subscription. Call it once after each successful Start, from the
// goroutine that called Start.
func (d *Dispatcher) Drain() {
	if d.drain != nil {
		drain := d.drain
		d.drain = nil
		drain()
	}
}

// waiter is one attempt's reply queue. Replies that are only "processing"
// are coalesced: while one is queued and not yet taken, more add nothing
// (each would only restart the same timer), so a worker's stream of them
// cannot fill the queue and push out its final reply.
type waiter struct {
	ch         chan *nats.Msg
	processing atomic.Bool // a processing reply is in ch, not yet taken
}

// extraLogEvery bounds the log lines about dropped extra replies.
const extraLogEvery = 10 * time.Second

// route hands a reply to the attempt waiting for it; replies for attempts
// that ended are dropped.
func (d *Dispatcher) route(m *nats.Msg) {
	token := m.Subject[len(d.inbox)+1:]
	d.waitMu.Lock()
	w := d.waiting[token]
	d.waitMu.Unlock()
	if w == nil {
		return
	}
	proc := isProcessingReply(m)
	if proc && !w.processing.CompareAndSwap(false, true) {
		return // coalesced into the processing reply already queued
	}
	select {
	case w.ch <- m:
	default:
		if proc {
			w.processing.Store(false)
		}
		d.droppedExtra()
	}
}

// droppedExtra counts an extra reply that did not fit (the attempt had
// its final reply queued already), logging at most once per extraLogEvery.
func (d *Dispatcher) droppedExtra() {
	d.m.outcome("reply_dropped")
	n := d.extraDropped.Add(1)
	now := time.Now().UnixNano()
	last := d.extraLogged.Load()
	if now-last < int64(extraLogEvery) || !d.extraLogged.CompareAndSwap(last, now) {
		return
	}
	n = d.extraDropped.Swap(0)
	d.log.Warn().Int64("dropped", n).Msg("workers sent more replies than their attempts take; extra replies dropped")
}

// isProcessingReply tells a worker's "processing" reply by its status.
func isProcessingReply(m *nats.Msg) bool {
	if len(m.Data) == 0 || len(m.Data) > 4096 || m.Header.Get(headerMarker) != "" {
		return false
	}
	var r struct {
		Status string `json:"status"`
	}
	return json.Unmarshal(m.Data, &r) == nil && r.Status == subjects.WorkProcessing
}

// expect registers an attempt's reply token; the returned func unregisters it.
func (d *Dispatcher) expect() (string, *waiter, func()) {
	token := nuid.Next()
	w := &waiter{ch: make(chan *nats.Msg, 32)}
	d.waitMu.Lock()
	d.waiting[token] = w
	d.waitMu.Unlock()
	return token, w, func() {
		d.waitMu.Lock()
		delete(d.waiting, token)
		d.waitMu.Unlock()
	}
}
