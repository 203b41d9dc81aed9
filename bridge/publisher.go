package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/bridgeworks/bridge/claimcheck"
	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/retry"
	"github.com/bridgeworks/bridge/subjects"
	"github.com/bridgeworks/bridge/tracing"
)

// publishWindow bounds the events of one connection that are published but
// not yet acknowledged by JetStream.
const publishWindow = 256

// publishMaxPending caps the unacknowledged async publishes of the whole
// NATS client, all connections together (see Run).
const publishMaxPending = 256 * publishWindow

// holdAfter is how long an acknowledgement may take before new publishes
// wait for it (acknowledgements take milliseconds when the stream is well).
const holdAfter = time.Second

// publishAckTimeout is how long an async publish waits for its
// acknowledgement before it is published again (the stream's duplicate
// window drops the copy if the first one was stored after all).
const publishAckTimeout = 5 * time.Second

// publisher turns connector events into JetStream messages for one
// connection. Events go out with async publishes in receive order (so per-room
// order holds), at most publishWindow unacknowledged; a failed publish is
// retried in place, in order, until it is stored or the bridge stops. Order
// holds through failures on one connection: if a publish was lost, so was
// everything sent after it, and they are retried in order; a publish that
// could not even be sent is completed synchronously before the next one.
// While a publish is unacknowledged for longer than holdAfter, or failed
// and is published again, no new one is sent (see retrying). (Publishes
// sent within holdAfter of one that is lost may still be stored before it
// is: the one order gap this leaves.)
type publisher struct {
	js       jetstream.JetStream
	prefix   string
	platform string
	conn     string
	log      *zerolog.Logger // the connection's, shared with its supervisor
	m        *metrics
	board    *statusBoard
	stored   *publishedStore   // events already stored, across restarts; nil: none
	cc       *claimcheck.Store // where events too large for one message go
	tracer   trace.Tracer      // a span per platform event; nil: none
	// fence, when set, says whether this process may still publish for the
	// connection (its lease is valid here); nil: always.
	fence func() error
	// retrying holds new publishes back while a failed one is published
	// again, so an event received later is never stored before it.
	retrying gate
	// wake, when set, lets run park with a connector.Notifier (see
	// runner); parked is the settler of the run it parked, nil when that
	// had nothing outstanding.
	wake   func()
	parked *settler
	// slots caches the PUBLISHED slots that catch-up's lookups read.
	slots slotCache
}

// gate holds callers of wait while any hold is open.
type gate struct {
	mu    sync.Mutex
	holds int
	open  chan struct{} // closed when the last hold is released; nil without holds
}

// hold opens a hold; the returned func releases it.
func (g *gate) hold() (release func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.holds == 0 {
		g.open = make(chan struct{})
	}
	g.holds++
	return sync.OnceFunc(func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		if g.holds--; g.holds == 0 {
			close(g.open)
			g.open = nil
		}
	})
}

// wait returns once no hold is open, or ctx's error.
func (g *gate) wait(ctx context.Context) error {
	g.mu.Lock()
	ch := g.open
	g.mu.Unlock()
	if ch == nil {
		return nil
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

type inflight struct {
	msg   *nats.Msg
	fut   jetstream.PubAckFuture
	ack   connector.AckFunc
	start time.Time
	gap   bool
	sys   bool
	sent  bool      // published synchronously, or acknowledged already: err is the outcome
	err   error     // with sent
	id    string    // event id to record in p.stored once stored; "" for none
	room  string    // the event's room, with id
	at    time.Time // the platform's time of the event, with id; zero: none
	skip  bool      // stored by an earlier run: acked, not published again
}

// message builds the NATS message of one event.
func (p *publisher) message(ev connector.Event, now time.Time) (*nats.Msg, error) {
	name := subjects.EventName(ev.Name)
	t := ev.Time
	if t.IsZero() {
		t = now
	}
	key := ev.Key
	if key == "" {
		key = nuid.Next()
	}
	var subj subjects.Subject
	if ev.Lifecycle != "" {
		if !subjects.IsLifecycle(string(ev.Lifecycle)) {
			return nil, fmt.Errorf("lifecycle event %q is not one of subjects.Lifecycles", ev.Lifecycle)
		}
		name = string(ev.Lifecycle)
		subj = subjects.Subject{Prefix: p.prefix, Kind: subjects.KindSys, Platform: p.platform, Conn: p.conn, Name: name}
		key = "sys:" + key
	} else {
		subj = subjects.Subject{Prefix: p.prefix, Kind: subjects.KindEvent, Platform: p.platform, Conn: p.conn, Room: ev.Room, Name: name}
	}
	if len(ev.Data) > 0 && !ev.ValidJSON && !json.Valid(ev.Data) {
		return nil, fmt.Errorf("event %s: payload is not JSON", name)
	}
	env := subjects.NewEvent(p.platform, p.conn, ev.Room, name, key, t, ev.Data)
	env.Transient = ev.Transient
	body := env.AppendJSON(nil)
	msg := nats.NewMsg(subj.String())
	msg.Data = body
	msg.Header.Set(subjects.HeaderMsgID, env.ID)
	msg.Header.Set(subjects.HeaderContentType, subjects.ContentTypeCloudEvents)
	return msg, nil
}

// sys publishes a lifecycle event synchronously; failures are logged, not
// fatal: lifecycle events inform, the connection state lives on /status.
func (p *publisher) sys(ctx context.Context, name subjects.Lifecycle, data any) {
	b, _ := json.Marshal(data)
	msg, err := p.message(connector.Event{Lifecycle: name, Data: b}, time.Now())
	if err == nil {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err = p.js.PublishMsg(ctx, msg)
		cancel()
	}
	if err != nil {
		p.log.Warn().Err(err).Str("event", string(name)).Msg("lifecycle event not published")
		return
	}
	p.m.count(p.conn, cPublishedSys)
}

// run receives from c and publishes until ctx ends or Receive fails; it
// returns Receive's error. Every event received is settled (acked or nacked)
// before run returns; drainCtx bounds that wait after ctx ends.
//
// With p.wake set and a connector.Notifier, run parks once the connector
// has nothing: it arms the connector's notice to call wake, keeps its
// settler while publishes are outstanding (they settle meanwhile) and
// returns errParked; the next call goes on with it. The end of ctx wakes a parked
// run through whoever ends it, not a watch of its own (a
// context.AfterFunc per parked connection, with the children map it puts
// in ctx, cost ~0.4 KiB): ctx is a lease term's, and every end of one
// calls wake after it (see startTerm, connCtl and Run).
func (p *publisher) run(ctx context.Context, drainCtx func() (context.Context, context.CancelFunc), c connector.Connector) error {
	st := p.parked
	p.parked = nil
	if st == nil {
		st = &settler{p: p, ctx: ctx, drainCtx: drainCtx}
	}
	n, _ := c.(connector.Notifier)
	if p.wake == nil {
		n = nil
	}
	for {
		var ev connector.Event
		var ack connector.AckFunc
		var err error
		if n != nil {
			var ok bool
			// As Receive: what is queued goes out first, then ctx's end.
			if ev, ack, ok, err = n.TryReceive(); !ok {
				if err = ctx.Err(); err == nil {
					if st.idle() {
						// Nothing outstanding: the next run makes another
						// (one kept per parked connection is 0.1 KiB).
						st.wg.Wait() // its last settle goroutine is on its way out
						st = nil
					}
					p.parked = st
					p.slots = slotCache{} // nothing kept while the connection idles
					n.Notify(p.wake)
					return errParked
				}
			}
		} else {
			ev, ack, err = c.Receive(ctx)
		}
		if err != nil {
			st.wait()
			return err
		}
		if p.fence != nil {
			if err := p.fence(); err != nil {
				// Another process may hold the connection now: not stored
				// here; the platform delivers it again to the new holder.
				ack(ctx, err)
				continue
			}
		}
		if ev.Room == "" { // the connector's own socket state; a room's session is not the connection's
			switch ev.Lifecycle {
			case subjects.LifecycleDisconnected:
				p.board.set(p.conn, StateReconnecting, nil)
			case subjects.LifecycleConnected:
				p.board.set(p.conn, StateConnected, nil)
			}
		}
		now := time.Now()
		msg, err := p.message(ev, now)
		if err != nil {
			p.log.Error().Err(err).Str("event", ev.Name).Str("lifecycle", string(ev.Lifecycle)).Msg("event dropped: cannot encode")
			ack(ctx, err)
			continue
		}
		p.trace(ctx, ev, msg)
		if !p.cc.Fits(msg) {
			if err := p.offload(ctx, msg); err != nil {
				if ctx.Err() == nil {
					p.log.Error().Err(err).Str("event", ev.Name).Msg("event dropped: cannot fit into NATS")
				}
				ack(ctx, err)
				continue
			}
		}
		sys := ev.Lifecycle != ""
		f := inflight{msg: msg, ack: ack, start: now, gap: ev.GapFill, sys: sys}
		if !sys && ev.Key != "" {
			f.id, f.room, f.at = msg.Header.Get(subjects.HeaderMsgID), ev.Room, ev.Time
		}
		if ev.GapFill && f.id != "" {
			// Catch-up finds what nobody marked processed, however old.
			found, err := p.stored.has(ctx, &p.slots, p.conn, f.room, f.at, f.id)
			if err != nil {
				p.log.Debug().Err(err).Msg("cannot tell whether a caught-up event was stored; publishing it")
			}
			if found {
				st.add(inflight{ack: ack, sent: true, skip: true})
				continue
			}
		}
		if err := p.retrying.wait(ctx); err != nil {
			ack(ctx, err) // stopping: not stored here
			continue
		}
		if f.fut, err = p.js.PublishMsgAsync(msg); err != nil {
			// Not sent (too many unacknowledged, or NATS away): publish it
			// here, before anything later, so the room's order holds.
			f.fut, f.err = nil, p.await(ctx, f)
			f.sent = true
		}
		st.add(f)
	}
}

// settler settles the publishes of one run in order. Its goroutine and
// its queue exist only while publishes are outstanding: add makes them,
// and they go once the queue is empty, so an idle connection holds
// neither. One runs at a time (a new one starts only after the last one
// left), which keeps the order. add is called from one goroutine (run's).
type settler struct {
	p        *publisher
	ctx      context.Context // run's
	drainCtx func() (context.Context, context.CancelFunc)
	wg       sync.WaitGroup

	mu sync.Mutex
	// queue holds at most publishWindow outstanding, by pointer; nil while
	// none is.
	queue   chan *inflight
	running bool
	// dctx bounds the settling left once ctx ended: made once per run, so
	// the drain's bound holds across settle goroutines.
	dctx   context.Context
	cancel context.CancelFunc
	// batch gathers the ids of stored events to record in p.stored, and
	// timer bounds its waits; used only by the settle goroutine, and
	// empty (nil) between two of them.
	batch publishedBatch
	timer *time.Timer
}

// add queues f (waiting while publishWindow are outstanding) and makes
// sure a settle goroutine runs.
func (s *settler) add(f inflight) {
	s.mu.Lock()
	if s.queue == nil {
		s.queue = make(chan *inflight, publishWindow)
	}
	q := s.queue
	s.mu.Unlock()
	q <- &f
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.running {
		// A settle that saw q empty just before f came has left (and
		// dropped q): this one drains it, and q is the queue again.
		s.running = true
		s.queue = q
		s.wg.Go(func() { s.settle(q) }) // owned: wait
	}
}

// idle reports that nothing is outstanding and no settle goroutine works:
// only add, on run's goroutine, would start one.
func (s *settler) idle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.running && s.queue == nil && s.dctx == nil
}

// wait returns once everything added is settled.
func (s *settler) wait() {
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cancel != nil {
		s.cancel()
	}
}

// settle settles the publishes queued on q until it is empty, then drops
// it. The ids of stored events are recorded in batches (see
// publishedBatch): a batch is written once it has waited batchLinger for
// more, or holds maxBatchIDs, and before settle leaves.
func (s *settler) settle(q chan *inflight) {
	for {
		select {
		case f := <-q:
			s.settleNext(f)
			continue
		default:
		}
		// Nothing queued: the batch waits for more while it may, then is
		// written.
		if d := s.lingerLeft(); s.batch.n > 0 && d > 0 {
			select {
			case f := <-q:
				s.stopTimer()
				s.settleNext(f)
				continue
			case <-s.startTimer(d):
			}
		}
		s.flush()
		s.mu.Lock()
		if len(q) == 0 {
			// Before running is cleared: the next settle goroutine may
			// start as soon as it is.
			if s.timer != nil {
				s.timer.Stop()
				s.timer = nil // nothing kept while the connection idles
			}
			s.running = false
			if s.queue == q {
				s.queue = nil
			}
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
	}
}

// batchLinger is how long a batch of stored ids waits for more before it
// is written: under load it gathers a burst of several connections' turns,
// and a kill -9 leaves no more than that long of stored ids unrecorded.
const batchLinger = 20 * time.Millisecond

// lingerLeft is how long the batch may still wait.
func (s *settler) lingerLeft() time.Duration {
	return batchLinger - time.Since(s.batch.since)
}

// settleNext settles f. While f is unacknowledged and the batch holds ids,
// it waits for the acknowledgement no longer than the batch may linger,
// then writes the batch before waiting on (settleOne).
func (s *settler) settleNext(f *inflight) {
	if !f.sent && s.batch.n > 0 && !s.ackWithin(f, s.lingerLeft()) {
		s.flush()
	}
	if s.p.settleOne(s.context(), *f, &s.batch) {
		s.flush()
	}
}

// ackWithin waits up to d for f's acknowledgement; with it, f's outcome is
// known (sent, no error) and it reports true.
func (s *settler) ackWithin(f *inflight, d time.Duration) bool {
	if acked(f.fut) {
		f.sent = true
		return true
	}
	if d <= 0 {
		return false
	}
	select {
	case <-f.fut.Ok():
		s.stopTimer()
		f.sent = true
		return true
	case <-s.startTimer(d):
		return false
	}
}

// startTimer arms the settle goroutine's timer for d and returns its
// channel.
func (s *settler) startTimer(d time.Duration) <-chan time.Time {
	if s.timer == nil {
		s.timer = time.NewTimer(d)
	} else {
		s.timer.Reset(d)
	}
	return s.timer.C
}

func (s *settler) stopTimer() {
	if s.timer != nil {
		s.timer.Stop()
	}
}

// acked reports whether fut's acknowledgement is in already. It takes the
// acknowledgement from fut: a caller that gets true must not wait on fut.
func acked(fut jetstream.PubAckFuture) bool {
	select {
	case <-fut.Ok():
		return true
	default:
		return false
	}
}

// flush records the batch of stored events.
func (s *settler) flush() {
	if err := s.p.stored.flush(&s.batch); err != nil {
		s.p.log.Debug().Err(err).Msg("stored events not recorded")
	}
}

// context is run's ctx, or once it ended, the drain's.
func (s *settler) context() context.Context {
	if s.ctx.Err() == nil {
		return s.ctx
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dctx == nil {
		s.dctx, s.cancel = s.drainCtx()
	}
	return s.dctx
}

// settleOne waits for f's publish, retrying a failure, and acks it. A
// stored event's id goes into batch, or when it cannot be batched, is
// recorded at once; full reports that batch is full.
func (p *publisher) settleOne(c context.Context, f inflight, batch *publishedBatch) (full bool) {
	err := f.err
	if !f.sent {
		err = p.await(c, f)
	}
	f.ack(c, err)
	if err != nil {
		return
	}
	if f.skip {
		p.m.count(p.conn, cAlreadyStored)
		return
	}
	switch {
	case f.id == "":
	case batchable(f.at, f.id):
		full = batch.add(p.conn, f.room, f.at, f.id)
	default:
		if err := p.stored.record(f.id); err != nil {
			p.log.Debug().Err(err).Msg("stored event not recorded")
		}
	}
	kind := cPublishedEvt
	if f.sys {
		kind = cPublishedSys
	}
	p.m.count(p.conn, kind)
	p.m.publishLatency(p.conn, time.Since(f.start).Seconds())
	if f.gap {
		p.m.count(p.conn, cGapFilled)
	}
	p.board.published(p.conn, 1)
	return full
}

// await returns nil once f is stored, retrying the publish with backoff
// until ctx ends.
func (p *publisher) await(ctx context.Context, f inflight) error {
	if f.fut != nil {
		if acked(f.fut) { // under load most are: no timer then
			return nil
		}
		// An acknowledgement slower than holdAfter holds new publishes
		// until this one is settled: one lost with a stream leader is
		// published again before anything sent later.
		slow := time.NewTimer(holdAfter)
		defer slow.Stop()
	wait:
		for {
			select {
			case <-f.fut.Ok():
				return nil
			case err := <-f.fut.Err():
				defer p.retrying.hold()()
				p.board.natsError(p.conn, "publish", err)
				p.m.count(p.conn, cPublishErrors)
				p.log.Warn().Err(err).Str("subject", f.msg.Subject).Msg("publish failed; retrying")
				break wait
			case <-slow.C:
				defer p.retrying.hold()()
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	bo := retry.Policy{Initial: 50 * time.Millisecond, Max: 5 * time.Second}.Start()
	held := false // a failed async publish holds from its failure on
	for {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := p.js.PublishMsg(pctx, f.msg)
		cancel()
		if err == nil {
			p.board.natsError(p.conn, "publish", nil)
			return nil
		}
		if ctx.Err() != nil {
			return errors.Join(ctx.Err(), err)
		}
		if f.fut == nil && !held {
			held = true
			defer p.retrying.hold()()
		}
		if claimcheck.IsTooLarge(err) { // can never be stored as it is
			if err := p.offload(ctx, f.msg); err != nil {
				return err
			}
			continue
		}
		p.board.natsError(p.conn, "publish", err)
		p.m.count(p.conn, cPublishErrors)
		wait := bo.Next()
		p.log.Warn().Err(err).Str("subject", f.msg.Subject).Int64("retry_in_ms", wait.Milliseconds()).Msg("publish failed; retrying")
		if !retry.Sleep(ctx, wait) {
			return ctx.Err()
		}
	}
}

// trace starts and ends the event's span and stores its context in the
// message's headers (traceparent), where dispatch and workers continue it.
func (p *publisher) trace(ctx context.Context, ev connector.Event, msg *nats.Msg) {
	if p.tracer == nil || ev.Lifecycle != "" {
		return
	}
	sctx, span := p.tracer.Start(ctx, "event "+subjects.EventName(ev.Name), trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(attribute.String("bridge.platform", p.platform), attribute.String("bridge.connection", p.conn),
			attribute.String("bridge.room", ev.Room), attribute.String("bridge.event_id", msg.Header.Get(subjects.HeaderMsgID))))
	tracing.Inject(sctx, msg.Header)
	span.End()
}
