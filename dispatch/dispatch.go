package dispatch

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/bridgeworks/bridge/ackflow"
	"github.com/bridgeworks/bridge/claimcheck"
	"github.com/bridgeworks/bridge/connector"
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
	// Events are the event names dispatched, default ["message_created"].
	Events []string
	// MessageEvents are the events that carry a platform message whose
	// processing state the bridge reports (mark_processing, …), default
	// ["message_created"]. The message id is the payload's "id".
	MessageEvents []string
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
	DoneTTL    time.Duration
	Replicas   int // of the KV buckets, default 1
	Log        zerolog.Logger
	Registerer prometheus.Registerer // nil: no metrics
	// Payloads keeps the event data of work requests and dead letters too
	// large for one NATS message; default a store for Conn with
	// claimcheck's defaults.
	Payloads *claimcheck.Store
}

func (o *Options) setDefaults() {
	if o.Prefix == "" {
		o.Prefix = subjects.DefaultPrefix
	}
	if len(o.Events) == 0 {
		o.Events = []string{"message_created"}
	}
	if o.MessageEvents == nil {
		o.MessageEvents = []string{"message_created"}
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
	o   Options
	log zerolog.Logger
	m   *metrics
	hb  *ackflow.Heartbeat

	mu    sync.Mutex
	rooms map[string]*roomQueue
	wg    sync.WaitGroup

	// Worker replies arrive on one wildcard subscription, inbox.*, and are
	// routed to the attempt waiting on their token.
	inbox   string
	waitMu  sync.Mutex
	waiting map[string]*waiter
	// Extra replies dropped since the last log line about them, and when
	// that line was written (UnixNano): one line per extraLogEvery at most.
	extraDropped atomic.Int64
	extraLogged  atomic.Int64

	barrier atomic.Bool // a crashed run's messages are being waited for (tests read it)

	starts, done jetstream.KeyValue // see start.go; set by Run
	// replayTo is the last stream sequence stored before this run had to
	// create a consumer that had existed: events up to it may have run.
	replayTo atomic.Uint64
}

func (d *Dispatcher) barrierSet() bool { return d.barrier.Load() }

type roomQueue struct {
	msgs   []jetstream.Msg // in stream order
	active int
}

// insert keeps the queue in stream order: redeliveries of older messages
// go before newer ones.
func (q *roomQueue) insert(m jetstream.Msg) {
	seq := streamSeq(m)
	i := len(q.msgs)
	for i > 0 && streamSeq(q.msgs[i-1]) > seq {
		i--
	}
	q.msgs = slices.Insert(q.msgs, i, m)
}

func streamSeq(m jetstream.Msg) uint64 {
	if md, err := m.Metadata(); err == nil {
		return md.Sequence.Stream
	}
	return 0
}

// New checks the options; it does no I/O.
func New(o Options) (*Dispatcher, error) {
	o.setDefaults()
	switch {
	case o.JS == nil || o.NC == nil || o.Exec == nil:
		return nil, errors.New("dispatch: JS, NC and Exec are required")
	case !subjects.IsPlatformName(o.Platform) || !subjects.IsConnName(o.Conn):
		return nil, fmt.Errorf("dispatch: bad platform %q or connection %q", o.Platform, o.Conn)
	}
	if _, err := parseStart(o.Start); err != nil {
		return nil, fmt.Errorf("dispatch: %w", err)
	}
	m, err := newMetrics(o.Registerer, o.Conn)
	if err != nil {
		return nil, fmt.Errorf("dispatch: metrics: %w", err)
	}
	return &Dispatcher{o: o, log: o.Log.With().Str("dispatch", o.Conn).Logger(), m: m, hb: ackflow.NewHeartbeat(),
		rooms: map[string]*roomQueue{}, inbox: o.NC.NewRespInbox(), waiting: map[string]*waiter{}}, nil
}

// ConsumerName is the durable consumer of a connection's dispatch rule.
func ConsumerName(conn string) string { return "dispatch_" + conn }

func (d *Dispatcher) consumerConfig() jetstream.ConsumerConfig {
	filters := make([]string, 0, len(d.o.Events))
	for _, e := range d.o.Events {
		filters = append(filters, d.o.Prefix+".evt."+d.o.Platform+"."+d.o.Conn+".*."+e)
	}
	return jetstream.ConsumerConfig{
		Durable:        ConsumerName(d.o.Conn),
		Description:    "bridge managed dispatch for " + d.o.Conn,
		FilterSubjects: filters,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        d.o.AckWait,
		MaxDeliver:     -1,
		MaxAckPending:  d.o.MaxAckPending,
	}
}

// Run consumes and dispatches until ctx ends, then lets attempts under way
// finish within DrainTimeout and returns.
func (d *Dispatcher) Run(ctx context.Context) error {
	stream := subjects.StreamName(d.o.Prefix, subjects.StreamEvents)
	var cons jetstream.Consumer
	wait := 250 * time.Millisecond
	for {
		var err error
		cons, err = d.openConsumer(ctx, stream)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		d.log.Warn().Err(err).Dur("retry_in", wait).Msg("dispatch consumer not ready; retrying")
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = min(wait*2, 15*time.Second)
	}
	sub, err := d.o.NC.Subscribe(d.inbox+".*", d.route)
	if err != nil {
		return fmt.Errorf("dispatch: reply subscription: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	// hard outlives ctx by DrainTimeout: attempts under way may finish.
	hard, cancelHard := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelHard()
	beat, stopBeat := context.WithCancel(context.WithoutCancel(ctx))
	var bg sync.WaitGroup
	bg.Go(func() { d.hb.Run(beat, max(d.o.AckWait/3, 10*time.Millisecond)) })
	defer func() {
		stopBeat()
		bg.Wait()
	}()
	d.log.Info().Str("consumer", ConsumerName(d.o.Conn)).Strs("events", d.o.Events).Msg("managed dispatch running")
	f := &fetcher{d: d, cons: cons}
	defer d.barrier.Store(false)
	if info, err := cons.Info(ctx); err == nil {
		// A previous run (a crash) may have left messages unsettled: until
		// they are back, newer ones wait, or a room's order would break.
		if f.barrier = ackflow.NewBarrier(info, 3*d.o.AckWait); f.barrier.Active() {
			d.barrier.Store(true)
			d.log.Info().Int("pending", f.barrier.Pending()).Uint64("barrier", f.barrier.Seq()).
				Msg("messages of a previous run still pending; newer ones wait for them")
		}
	}
	f.loop(ctx, hard)

	done := make(chan struct{})
	go func() { // owned: ends when every handler has
		d.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(d.o.DrainTimeout):
		d.log.Warn().Msg("attempts still under way at shutdown; they will be redelivered")
		cancelHard()
		<-done
	}
	// A round trip makes sure the server took the hand-backs before the
	// connection (or an embedded server) goes away.
	_ = d.o.NC.FlushTimeout(2 * time.Second)
	return nil
}

// fetcher pulls messages and hands them to their room's queue, holding
// them all while a predecessor's unsettled ones come back (ackflow.Barrier).
type fetcher struct {
	d       *Dispatcher
	cons    jetstream.Consumer
	barrier *ackflow.Barrier
	held    []jetstream.Msg
}

func (f *fetcher) loop(ctx, hard context.Context) {
	d := f.d
	slots := make(chan struct{}, d.o.MaxAckPending)
	release := func() { <-slots }
	for ctx.Err() == nil {
		if f.barrier.Active() {
			f.checkBarrier(ctx, hard, release)
		}
		n := cap(slots) - len(slots)
		if n == 0 {
			select { // wait for a slot (or, behind the barrier, check it again)
			case slots <- struct{}{}:
				<-slots
				continue
			case <-time.After(250 * time.Millisecond):
				continue
			case <-ctx.Done():
				return
			}
		}
		wait := time.Second
		if f.barrier.Active() {
			wait = 250 * time.Millisecond
		}
		batch, err := f.cons.Fetch(min(n, 256), jetstream.FetchMaxWait(wait))
		if err != nil {
			if ctx.Err() == nil {
				d.log.Warn().Err(err).Msg("fetch failed")
				sleep(ctx, time.Second)
			}
			continue
		}
		for m := range batch.Messages() {
			slots <- struct{}{}
			if f.barrier.Active() {
				d.hb.Hold(m)
				f.held = append(f.held, m)
				f.barrier.Hold(streamSeq(m))
				continue
			}
			d.add(ctx, hard, m, release)
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && ctx.Err() == nil {
			d.log.Debug().Err(err).Msg("fetch ended")
		}
	}
	for _, m := range f.held { // stopping: hand them back
		d.hb.Release(m)
		d.redeliverLater(m)
	}
}

// checkBarrier lifts the barrier when ackflow.Barrier allows, and queues
// the held messages in stream order.
func (f *fetcher) checkBarrier(ctx, hard context.Context, release func()) {
	ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
	info, err := f.cons.Info(ictx)
	cancel()
	if err != nil {
		info = nil
	}
	lift, timedOut := f.barrier.Lift(info)
	if !lift {
		return
	}
	if timedOut {
		f.d.log.Warn().Msg("previous run's messages did not all come back; resuming")
	}
	f.d.log.Info().Int("held", len(f.held)).Msg("previous run's messages done; resuming in order")
	f.d.barrier.Store(false)
	slices.SortFunc(f.held, func(a, b jetstream.Msg) int { return cmp.Compare(streamSeq(a), streamSeq(b)) })
	for _, m := range f.held {
		f.d.hb.Release(m)
		f.d.add(ctx, hard, m, release)
	}
	f.held = nil
}

// add queues m behind its room's earlier messages.
func (d *Dispatcher) add(ctx, hard context.Context, m jetstream.Msg, release func()) {
	d.hb.Hold(m)
	room := ""
	if s, err := subjects.Parse(d.o.Prefix, m.Subject()); err == nil {
		room = s.Room
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	q := d.rooms[room]
	if q == nil {
		q = &roomQueue{}
		d.rooms[room] = q
	}
	q.insert(m)
	d.startLocked(ctx, hard, room, q, release)
}

func (d *Dispatcher) startLocked(ctx, hard context.Context, room string, q *roomQueue, release func()) {
	for q.active < d.o.MaxInFlightPerRoom && len(q.msgs) > 0 {
		m := q.msgs[0]
		q.msgs = q.msgs[1:]
		q.active++
		d.wg.Go(func() {
			d.handle(ctx, hard, m) // releases m's heartbeat as it settles it
			d.hb.Release(m)
			release()
			d.mu.Lock()
			defer d.mu.Unlock()
			q.active--
			if q.active == 0 && len(q.msgs) == 0 {
				delete(d.rooms, room)
				return
			}
			d.startLocked(ctx, hard, room, q, release)
		})
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

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
