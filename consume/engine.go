package consume

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/bridgeworks/bridge/ackflow"
	"github.com/bridgeworks/bridge/internal/tick"
	"github.com/bridgeworks/bridge/natsbus"
	"github.com/bridgeworks/bridge/retry"
)

// Msg is one message in hand.
type Msg struct {
	JS        jetstream.Msg
	Seq       uint64    // stream sequence
	Stored    time.Time // when the stream stored it
	Delivered uint64    // deliveries so far, this one included
	Room      string    // the ordering key
	// RetryIn is set by a handler that shutdown cut short during a retry
	// wait: what was left of it. The hand-back waits at least that long
	// (capped by Options.MaxHandBack).
	RetryIn time.Duration
}

// Handler handles one message and says how to settle it; ok is false when
// stop ended before it finished, and the engine hands the message back.
// stop ends when the engine stops taking work; hard, DrainTimeout later,
// when running calls must give up. A handler never settles the message
// itself.
type Handler func(stop, hard context.Context, m *Msg) (d ackflow.Decision, ok bool)

// Options configure [Run]. JS, NC, Stream, Consumer.Durable and RoomOf are
// required; other zero fields take the default in their comment.
type Options struct {
	JS     jetstream.JetStream
	NC     *nats.Conn // confirms hand-backs at shutdown with a round trip
	Stream string
	// Consumer is the durable consumer's configuration (Durable, filters,
	// deliver policy, description). Run sets AckPolicy explicit, AckWait,
	// MaxAckPending and MaxDeliver -1.
	Consumer jetstream.ConsumerConfig
	// RoomOf returns the ordering key of a subject.
	RoomOf func(subject string) string

	MaxParallel        int           // messages handled at once, default MaxAckPending
	MaxInFlightPerRoom int           // messages of one room handled at once, default 1
	MaxAckPending      int           // messages in hand, default 1024
	AckWait            time.Duration // default 10s; heartbeats every AckWait/3
	FetchWait          time.Duration // expiry of each pull, default 500ms: how long an engine lingers after work, and takes to stop fetching
	DrainTimeout       time.Duration // default 10s
	MinHandBack        time.Duration // least hand-back delay at shutdown, default 1s
	MaxHandBack        time.Duration // cap on a hand-back stretched by RetryIn, default 30s
	// Setup runs before the consumer is created, on every (re)try; for the
	// handler's own buckets.
	Setup func(ctx context.Context) error
	// Configure, when set, adjusts the consumer's configuration before each
	// create or update: existing is the consumer's info when it exists, nil
	// when it is about to be created (first start, or lost while running).
	// Where a consumer starts cannot change once it exists; this is where a
	// handler picks it for a new one.
	Configure func(ctx context.Context, cfg *jetstream.ConsumerConfig, existing *jetstream.ConsumerInfo) error
	// Ready is called once with the consumer's info at start and whether
	// Run had to create it (it did not exist); with Release, info is nil
	// when the engine starts released.
	Ready func(info *jetstream.ConsumerInfo, created bool)
	// Heartbeat, when set, keeps this engine's messages in hand alive: one
	// Heartbeat shared by every engine of a process, run (and stopped after
	// every engine ended) by its owner. Its interval must be at most
	// AckWait/3. Nil: Run runs a Heartbeat of its own, beating every
	// AckWait/3, for as long as it runs.
	Heartbeat *ackflow.Heartbeat
	// Doorbell, when set, lets the engine park while idle: the subject
	// filters the consumer's messages are published on, subscribed as core
	// NATS through Mux. The fetch loop then runs only while there is work
	// and no pull stays open while idle (see the package doc). Empty: the
	// loop runs, and a pull is open, for as long as Run does.
	Doorbell []string
	// Mux delivers the doorbell subscriptions; required with Doorbell. It
	// must run (natsbus.Mux.Run) for as long as the engine does; its
	// Reconnected wakes a parked engine.
	Mux *natsbus.Mux
	// IdleWake is how often a parked engine pulls anyway, for anything
	// the doorbell missed; default 30s, or IdleWheel's period.
	IdleWake time.Duration
	// IdleWheel, when set, is the process's wheel the parked engines'
	// IdleWake wake-ups share (its period is IdleWake): one runtime timer
	// for all of them instead of one each. Its owner also calls its
	// TickAll after every NATS reconnect, in place of a Mux.OnReconnect
	// registration per engine. Nil: a timer per engine, and Mux's
	// Reconnected wakes it.
	IdleWheel *tick.Wheel
	// Release, when set, lets an engine idle for Release.After give its
	// consumer back to the server until work comes (see [Release]); it
	// needs Doorbell. Nil: the consumer stays for as long as the engine
	// runs.
	Release *Release
	Log     zerolog.Logger
}

const (
	fetchBatch   = 256
	barrierWait  = 250 * time.Millisecond // pull expiry while the barrier holds
	setupTimeout = 10 * time.Second
)

// setDefaults checks o and fills in its defaults, those of the engine's
// own part (Spec) included.
func (o *Options) setDefaults() error {
	sp := o.spec()
	if err := sp.check(o.Mux); err != nil {
		return err
	}
	return o.setShared()
}

// setShared checks and fills in the part of o every engine of a Template
// shares: all but its Spec.
func (o *Options) setShared() error {
	if o.JS == nil || o.NC == nil || o.Stream == "" {
		return errors.New("consume: JS, NC and Stream are required")
	}
	if o.MaxAckPending <= 0 {
		o.MaxAckPending = 1024
	}
	if o.MaxParallel <= 0 {
		o.MaxParallel = o.MaxAckPending
	}
	if o.MaxInFlightPerRoom <= 0 {
		o.MaxInFlightPerRoom = 1
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.AckWait, 10*time.Second)
	def(&o.FetchWait, 500*time.Millisecond)
	def(&o.DrainTimeout, 10*time.Second)
	def(&o.MinHandBack, time.Second)
	def(&o.MaxHandBack, 30*time.Second)
	if o.IdleWheel != nil {
		o.IdleWake = o.IdleWheel.Period()
	}
	def(&o.IdleWake, 30*time.Second)
	if o.Heartbeat != nil && o.Heartbeat.Interval() > o.AckWait/3 {
		return fmt.Errorf("consume: the shared heartbeat beats every %s, more than a third of AckWait %s: messages in hand would be redelivered",
			o.Heartbeat.Interval(), o.AckWait)
	}
	c := &o.Consumer
	c.AckPolicy = jetstream.AckExplicitPolicy
	c.AckWait = o.AckWait
	c.MaxAckPending = o.MaxAckPending
	c.MaxDeliver = -1
	return nil
}

// engine is the state of one run of the engine; nothing in it outlives
// its Drain.
type engine struct {
	o    *Options // the engine's own, or its Template's (shared)
	sp   Spec     // what tells it apart: with Start, taken from o
	h    Handler
	cons jetstream.Consumer
	hb   *ackflow.Heartbeat
	// slots has one token per message in hand; made by the first acquire
	// (on the fetch loop's goroutine, before any message is in hand): an
	// engine that never takes one keeps none.
	slots chan struct{}
	sched *scheduler // made by the first message taken (scheduler): an idle engine keeps none
	// hard is the handlers' hard context (see Handler), made from the
	// fetch loop's ctx by the first message taken (hardCtx) and cancelled
	// by the drain: an engine that never takes one makes none (a context
	// per idle engine is 0.1 KiB). Guarded by mu.
	hard       context.Context
	cancelHard context.CancelFunc
	// barrier holds every message while a predecessor's unsettled ones
	// come back; held are the messages it holds.
	barrier *ackflow.Barrier
	held    []*Msg

	mu     sync.Mutex
	inHand map[uint64]bool // stream sequences in hand, to drop a redelivered copy; made by the first take
	// taken is the highest stream sequence taken; settled the highest
	// below which everything taken was settled (taken, whenever nothing is
	// in hand). With Release, a consumer lost while held is created again
	// after settled.
	taken, settled uint64
	comesBack      map[uint64]bool // handed back or not settled: to be taken again

	// bell parks the fetch loop while idle; nil without Options.Doorbell.
	// Set before the first message is taken.
	bell *bell

	// With Options.Release, on the fetch loop's goroutine (the starter's
	// before the first ring): the last stream sequence settled when the
	// consumer was released (cons is nil meanwhile), and when the loop last
	// took a message or took the consumer back.
	cursor  uint64
	takenAt time.Time
}

// logger is Options.Log with the consumer's name. It is made for each
// line: the engine logs rarely (setup retries, the barrier, warnings, the
// drain), and a logger kept per engine would cost every idle connection
// its context buffer.
func (e *engine) logger() *zerolog.Logger {
	l := e.sp.Log.With().Str("consumer", e.sp.Durable).Logger()
	return &l
}

// Engine is a started consumer engine: [Start] returns one, and its
// [Engine.Drain] ends it once the context given to Start has ended.
type Engine struct {
	e        *engine
	stopped  <-chan struct{}    // Start's ctx.Done()
	stopBeat context.CancelFunc // nil with a shared Heartbeat
	starter  sync.WaitGroup     // the consumer's setup, then (without a doorbell) the fetch loop
	bg       sync.WaitGroup     // the engine's own heartbeat, without a shared one
	// Set on the starter's goroutine once the consumer is ready; read by
	// Drain after starter.Wait.
	ready     bool
	closeBell func()
	drained   bool
}

// Run is [Start], then [Engine.Drain] once ctx ends: it creates or updates
// the consumer (retrying until ctx ends), handles messages until ctx ends,
// drains and returns nil. It returns an error only for bad options.
func Run(ctx context.Context, o Options, h Handler) error {
	en, err := Start(ctx, o, h)
	if err != nil {
		return err
	}
	en.Drain()
	return nil
}

// Start checks o and starts the engine; it returns at once, an error only
// for bad options. The consumer is created or updated on a goroutine that
// retries until NATS answers (or ctx ends) and, with a doorbell, ends once
// the engine is running: a parked engine then holds no goroutine (see the
// package doc). Without a doorbell that goroutine goes on as the fetch
// loop until ctx ends. Once ctx ends the engine takes no new message; the
// caller then calls [Engine.Drain], which finishes the drain.
func Start(ctx context.Context, o Options, h Handler) (*Engine, error) {
	if err := o.setDefaults(); err != nil {
		return nil, err
	}
	return start(ctx, &o, o.spec(), h), nil
}

// start starts an engine of o and sp, both checked.
func start(ctx context.Context, o *Options, sp Spec, h Handler) *Engine {
	if r := sp.Release; r != nil && r.After <= 0 {
		rc := *r
		rc.After = defaultReleaseAfter
		sp.Release = &rc
	}
	e := &engine{o: o, sp: sp, h: h, hb: o.Heartbeat}
	en := &Engine{e: e, stopped: ctx.Done()}
	if e.hb == nil {
		e.hb = ackflow.NewHeartbeat(o.AckWait / 3)
		beat, stopBeat := context.WithCancel(context.WithoutCancel(ctx))
		en.stopBeat = stopBeat
		en.bg.Go(func() { e.hb.Run(beat) }) // owned: stopped and waited for by Drain, once the drain is done
	}
	en.starter.Go(func() { en.start(ctx) }) // owned: Drain waits for it
	return en
}

// start runs on the starter goroutine: the consumer's setup, retried until
// it succeeds or ctx ends, then the first ring of the doorbell (or, without
// one, the fetch loop until ctx ends).
func (en *Engine) start(ctx context.Context) {
	e := en.e
	info, created, ok := e.setup(ctx)
	if !ok {
		return // ctx ended first
	}
	if e.sp.Ready != nil {
		e.sp.Ready(info, created)
	}
	e.takenAt = time.Now()
	if e.barrier = newBarrier(info, e.o.AckWait); e.barrier.Active() {
		e.logger().Info().Int("pending", e.barrier.Pending()).Uint64("barrier", e.barrier.Seq()).
			Msg("messages of a previous run still pending; newer ones wait for them")
	}
	en.ready = true
	en.closeBell = e.consume(ctx)
}

// Drain waits until the context given to Start has ended, then for the
// fetch loop's open pull, then drains: running handlers get DrainTimeout
// to finish, then their calls are cancelled, and every unsettled message
// is handed back (see the package doc). Call it once; later calls return
// at once.
func (en *Engine) Drain() {
	if en.drained {
		return
	}
	en.drained = true
	<-en.stopped
	en.starter.Wait()
	if en.closeBell != nil {
		en.closeBell() // waits for a running loop to finish its pull
	}
	if en.ready {
		en.e.drain()
	}
	en.e.stopHard()
	if en.stopBeat != nil {
		en.stopBeat()
		en.bg.Wait()
	}
}

// consume fetches and handles messages until ctx ends: with a doorbell, on
// a fetch loop started when there may be work and parked when there is
// none, and it returns at once with the func that closes the bell; without
// one (or when its subscription fails), on this goroutine until ctx ends.
func (e *engine) consume(ctx context.Context) (closeBell func()) {
	if len(e.sp.Doorbell) == 0 {
		e.fetchLoop(ctx, nil)
		return nil
	}
	b, closeBell, err := e.openBell(ctx)
	if err != nil {
		e.logger().Warn().Err(err).Strs("doorbell", e.sp.Doorbell).Msg("doorbell subscription failed; pulling without parking")
		e.fetchLoop(ctx, nil)
		return nil
	}
	e.bell = b
	b.ring() // the first run fetches what is stored
	return closeBell
}

// fetchLoop pulls messages while ctx lasts, never more in hand than there
// are slots. After ctx ends it finishes the open pull, so nothing the
// server delivered is left to time out, and returns. With a bell it also
// returns (parks) once a pull comes back empty while the barrier is down
// and no ring came meanwhile.
func (e *engine) fetchLoop(ctx context.Context, bell *bell) {
	b := retry.Policy{Initial: 100 * time.Millisecond, Max: 5 * time.Second}.Start()
	backoff := func(err error, what string) bool {
		wait := b.Next()
		e.logger().Warn().Err(err).Int64("retry_in_ms", wait.Milliseconds()).Msg(what)
		if !retry.Sleep(ctx, wait) {
			return false
		}
		if e.released() { // the top of the loop takes it back
			return true
		}
		if _, _, err := e.ensureConsumer(ctx); err != nil {
			e.logger().Debug().Err(err).Msg("consumer not re-created")
		}
		return true
	}
	for ctx.Err() == nil {
		if e.released() {
			// Without a bell the loop never parks: take it back at once. A
			// doorbell ring is a message published, maybe not stored yet:
			// the consumer's pull waits for it.
			found, err := true, error(nil)
			if bell != nil && !bell.pulling() {
				found, err = e.storedAfter(ctx)
			}
			if err == nil && found {
				err = e.reacquire(ctx)
			}
			if err != nil {
				if !backoff(err, "released consumer not taken back; retrying") {
					return
				}
				continue
			}
			if !found {
				if ctx.Err() == nil && bell.park(false) {
					return
				}
				continue
			}
			b.Reset()
		}
		fw := e.o.FetchWait
		if e.barrier.Active() {
			e.checkBarrier(ctx)
			fw = min(fw, barrierWait)
		}
		n := e.acquire(ctx, e.barrier.Active())
		if n == 0 {
			continue // ctx ended, or the barrier is to be checked again
		}
		if bell != nil {
			bell.pulling()
		}
		batch, err := e.cons.Fetch(n, jetstream.FetchMaxWait(fw))
		if err != nil {
			e.release(n)
			if !backoff(err, "fetch failed; retrying") {
				return
			}
			continue
		}
		got := 0
		for m := range batch.Messages() {
			got++
			e.take(ctx, e.hardCtx(ctx), m)
		}
		e.release(n - got)
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			if !backoff(err, "fetch ended with an error; retrying") {
				return
			}
			continue
		}
		b.Reset()
		if bell != nil && got == 0 && !e.barrier.Active() && ctx.Err() == nil {
			if e.sp.Release != nil && bell.takeRelease() {
				e.releaseDue(ctx, bell)
				if e.released() {
					continue // parks at the top, unless something came meanwhile
				}
			}
			if bell.park(e.sp.Release != nil) {
				return
			}
		}
	}
}

// acquire takes between 1 and fetchBatch slots, waiting for the first; 0
// when ctx ends, or, when recheck is set (the barrier holds messages that
// may fill every slot), after barrierWait.
func (e *engine) acquire(ctx context.Context, recheck bool) int {
	if e.slots == nil {
		e.slots = make(chan struct{}, e.o.MaxAckPending)
	}
	var tick <-chan time.Time
	if recheck {
		t := time.NewTimer(barrierWait)
		defer t.Stop()
		tick = t.C
	}
	select {
	case e.slots <- struct{}{}:
	case <-ctx.Done():
		return 0
	case <-tick:
		return 0
	}
	n := 1
	for n < fetchBatch {
		select {
		case e.slots <- struct{}{}:
			n++
		default:
			return n
		}
	}
	return n
}

func (e *engine) release(n int) {
	for range n {
		<-e.slots
	}
}

// take puts one delivered message in hand: kept alive, then queued for its
// room (or held behind the barrier).
func (e *engine) take(ctx, hard context.Context, jm jetstream.Msg) {
	meta, err := jm.Metadata()
	if err != nil {
		e.logger().Error().Err(err).Str("subject", jm.Subject()).Msg("message without JetStream metadata; terminated")
		_ = ackflow.Apply(jm, ackflow.Decision{Action: ackflow.ActionTerm, Reason: "no metadata"})
		e.release(1)
		return
	}
	m := &Msg{JS: jm, Seq: meta.Sequence.Stream, Stored: meta.Timestamp, Delivered: meta.NumDelivered, Room: e.sp.RoomOf(jm.Subject())}
	e.takenAt = time.Now()
	e.mu.Lock()
	dup := e.inHand[m.Seq]
	if e.inHand == nil {
		e.inHand = map[uint64]bool{}
	}
	e.inHand[m.Seq] = true
	e.taken = max(e.taken, m.Seq)
	delete(e.comesBack, m.Seq)
	e.mu.Unlock()
	if dup {
		// AckWait ran out (a stall longer than AckWait) and the server sent
		// the message again while the first copy is still queued or
		// running. The first copy settles it.
		e.logger().Warn().Str("subject", jm.Subject()).Uint64("seq", m.Seq).Msg("redelivered while in hand; copy dropped")
		e.release(1)
		return
	}
	e.hb.Hold(jm)
	if e.barrier.Active() {
		e.held = append(e.held, m)
		e.barrier.Hold(m.Seq)
		return
	}
	e.scheduler().add(ctx, hard, m)
}

// checkBarrier lifts the barrier when ackflow.Barrier allows, and queues
// the held messages in stream order.
func (e *engine) checkBarrier(ctx context.Context) {
	ictx, cancel := context.WithTimeout(ctx, setupTimeout)
	info, err := e.cons.Info(ictx)
	cancel()
	if err != nil {
		e.logger().Debug().Err(err).Msg("consumer info failed")
		info = nil
	}
	lift, timedOut := e.barrier.Lift(info)
	if !lift {
		return
	}
	if timedOut {
		e.logger().Warn().Msg("previous run's messages did not all come back; resuming")
	}
	e.logger().Info().Int("held", len(e.held)).Msg("previous run's messages done; resuming in order")
	slices.SortFunc(e.held, func(a, b *Msg) int { return cmp.Compare(a.Seq, b.Seq) })
	hard := e.hardCtx(ctx)
	for _, m := range e.held {
		e.scheduler().add(ctx, hard, m)
	}
	e.held = nil
}

// process is the scheduler's step: handle the message, then settle it.
func (e *engine) process(stop, hard context.Context, m *Msg) bool {
	d, ok := e.h(stop, hard, m)
	if !ok {
		return false
	}
	e.hb.Release(m.JS)
	err := ackflow.Apply(m.JS, d)
	if err != nil {
		e.logger().Warn().Err(err).Str("subject", m.JS.Subject()).Str("action", d.Action.String()).
			Msg("settle failed; the message may be redelivered")
	} else if d.Action == ackflow.ActionRetry && e.bell != nil {
		e.bell.nakAt(time.Now().Add(max(d.Delay, time.Millisecond)))
	}
	// after settling: a redelivery before it is dropped as a copy
	e.done(m, err == nil && (d.Action == ackflow.ActionAck || d.Action == ackflow.ActionTerm))
	e.release(1)
	return true
}

// done takes m out of hand; settled says it was acked or terminated, not
// handed back to come again.
func (e *engine) done(m *Msg, settled bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.inHand, m.Seq)
	if !settled {
		if e.comesBack == nil {
			e.comesBack = map[uint64]bool{}
		}
		e.comesBack[m.Seq] = true
	}
	if len(e.inHand) == 0 && len(e.comesBack) == 0 {
		e.settled = e.taken
	}
}
