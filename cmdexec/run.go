package cmdexec

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bridgeworks/bridge/ackflow"
	"github.com/bridgeworks/bridge/subjects"
)

const (
	// fetchBatch bounds one pull request.
	fetchBatch = 256
	// drainNakDelay is the least delay of the NakWithDelay that hands back
	// unfinished commands at shutdown.
	drainNakDelay = time.Second
	// barrierWait is the pull expiry (and so the poll period of the ack
	// floor) while a restarted executor waits for its predecessor's commands.
	barrierWait = 250 * time.Millisecond
	// setupTimeout bounds each JetStream call of the setup.
	setupTimeout = 10 * time.Second
)

// run is the state of one Run call; nothing in it outlives Run.
type run struct {
	e     *Executor
	cons  jetstream.Consumer
	hb    *ackflow.Heartbeat
	slots chan struct{} // one token per message in hand
	sched *scheduler
	// barrier holds every message while a predecessor's unsettled ones come
	// back (ackflow.Barrier); held are the messages it holds.
	barrier *ackflow.Barrier
	held    []*item

	mu     sync.Mutex
	inHand map[uint64]bool // stream sequences in hand, to drop a redelivered copy
}

// Run creates or updates the KV bucket and the durable consumer, serves RPC
// and executes durable commands until ctx ends; then it drains (see the
// package doc) and returns nil. Setup failures are retried with backoff
// until ctx ends. Only one Run of an Executor may be active at a time, and
// only one executor per connection should consume at a time: per-room order
// holds within one consumer's client.
func (e *Executor) Run(ctx context.Context) (err error) {
	defer wrapErr(&err, "cmdexec: %s", e.o.Conn)
	if !e.running.CompareAndSwap(false, true) {
		return errors.New("already running")
	}
	defer e.running.Store(false)
	cons, info, ok := e.setup(ctx)
	if !ok {
		return nil // ctx ended first
	}
	r := &run{e: e, cons: cons, hb: ackflow.NewHeartbeat(), slots: make(chan struct{}, e.o.MaxAckPending), inHand: map[uint64]bool{}}
	r.sched = newScheduler(e.o.MaxParallelRooms, r.process)
	if r.barrier = ackflow.NewBarrier(info, 3*e.o.AckWait); r.barrier.Active() {
		e.log.Info().Int("pending", r.barrier.Pending()).Uint64("barrier", r.barrier.Seq()).
			Msg("commands of a previous run still pending; newer ones wait for them")
	}

	hard, cancelHard := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelHard()
	beat, stopBeat := context.WithCancel(context.WithoutCancel(ctx))
	var bg sync.WaitGroup
	bg.Go(func() { r.hb.Run(beat, max(e.o.AckWait/3, 10*time.Millisecond)) })
	defer func() {
		stopBeat()
		bg.Wait()
	}()

	rpc, err := e.startRPC(hard)
	if err != nil {
		return err
	}
	e.log.Info().Str("consumer", ConsumerName(e.o.Conn)).Msg("command executor running")
	r.fetchLoop(ctx, hard)
	rpc.stop()
	r.drain(cancelHard, rpc)
	e.log.Info().Msg("command executor stopped")
	return nil
}

// setup makes sure the KV bucket and the consumer exist, retrying with
// backoff; false when ctx ends first.
func (e *Executor) setup(ctx context.Context) (jetstream.Consumer, *jetstream.ConsumerInfo, bool) {
	wait := 250 * time.Millisecond
	for {
		cons, err := e.ensureConsumer(ctx)
		if err == nil {
			return cons, cons.CachedInfo(), true
		}
		if ctx.Err() != nil {
			return nil, nil, false
		}
		e.log.Warn().Err(err).Dur("retry_in", wait).Msg("command consumer not ready; retrying")
		if !sleep(ctx, wait) {
			return nil, nil, false
		}
		wait = min(wait*2, 15*time.Second)
	}
}

// ensureConsumer creates or updates the bucket and the durable consumer.
func (e *Executor) ensureConsumer(ctx context.Context) (_ jetstream.Consumer, err error) {
	ctx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	if _, err := e.bucket(ctx); err != nil {
		return nil, err
	}
	stream := subjects.StreamName(e.o.Prefix, subjects.StreamCommands)
	defer wrapErr(&err, "consumer %s on %s", ConsumerName(e.o.Conn), stream)
	st, err := e.o.JS.Stream(ctx, stream)
	if err != nil {
		return nil, err
	}
	e.firstLookup.Store(e.o.ExecutedTTL > st.CachedInfo().Config.Duplicates)
	return e.o.JS.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{
		Durable:       ConsumerName(e.o.Conn),
		Description:   "bridge: commands of connection " + e.o.Conn,
		FilterSubject: subjects.Filter(e.o.Prefix, subjects.KindCommand, e.o.Platform, e.o.Conn),
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       e.o.AckWait,
		MaxAckPending: e.o.MaxAckPending,
		MaxDeliver:    -1,
	})
}

// fetchLoop pulls messages while ctx lasts, never more in hand than there
// are slots. After ctx ends it finishes the open pull request, so nothing
// the server delivered is left to time out, and returns.
func (r *run) fetchLoop(ctx, hard context.Context) {
	log := r.e.log
	wait := 100 * time.Millisecond
	backoff := func(err error, what string) bool {
		log.Warn().Err(err).Dur("retry_in", wait).Msg(what)
		ok := sleep(ctx, wait)
		wait = min(wait*2, 5*time.Second)
		if ok {
			if c, err := r.e.ensureConsumer(ctx); err == nil {
				r.cons = c
			}
		}
		return ok
	}
	for ctx.Err() == nil {
		fw := r.e.o.FetchWait
		if r.barrier.Active() {
			r.checkBarrier(ctx, hard)
			fw = min(fw, barrierWait)
		}
		n := r.acquire(ctx)
		if n == 0 {
			return
		}
		batch, err := r.cons.Fetch(n, jetstream.FetchMaxWait(fw))
		if err != nil {
			r.release(n)
			if !backoff(err, "fetch failed; retrying") {
				return
			}
			continue
		}
		got := 0
		for m := range batch.Messages() {
			got++
			r.take(ctx, hard, m)
		}
		r.release(n - got)
		if err := batch.Error(); err != nil {
			if !backoff(err, "fetch ended with an error; retrying") {
				return
			}
			continue
		}
		wait = 100 * time.Millisecond
	}
}

// acquire takes between 1 and fetchBatch slots, waiting for the first; 0
// when ctx ends.
func (r *run) acquire(ctx context.Context) int {
	select {
	case r.slots <- struct{}{}:
	case <-ctx.Done():
		return 0
	}
	n := 1
	for n < fetchBatch {
		select {
		case r.slots <- struct{}{}:
			n++
		default:
			return n
		}
	}
	return n
}

func (r *run) release(n int) {
	for range n {
		<-r.slots
	}
}

// take puts one delivered message in hand: kept alive, then queued for its
// room (or held behind the barrier).
func (r *run) take(ctx, hard context.Context, m jetstream.Msg) {
	meta, err := m.Metadata()
	if err != nil {
		r.e.log.Error().Err(err).Str("subject", m.Subject()).Msg("message without JetStream metadata; terminated")
		_ = ackflow.Apply(m, ackflow.Decision{Action: ackflow.ActionTerm, Reason: "no metadata"})
		r.release(1)
		return
	}
	prefix := subjects.Filter(r.e.o.Prefix, subjects.KindCommand, r.e.o.Platform, r.e.o.Conn)
	room, _, _ := strings.Cut(strings.TrimPrefix(m.Subject(), prefix[:len(prefix)-1]), ".")
	it := &item{msg: m, seq: meta.Sequence.Stream, stored: meta.Timestamp, room: room}
	r.mu.Lock()
	dup := r.inHand[it.seq]
	r.inHand[it.seq] = true
	r.mu.Unlock()
	if dup {
		// AckWait ran out (a stall longer than AckWait) and the server sent
		// the message again while the first copy is still queued or running.
		// The first copy settles it; InProgress on it keeps the server from
		// sending more.
		r.e.log.Warn().Str("subject", m.Subject()).Uint64("seq", it.seq).Msg("redelivered while in hand; copy dropped")
		r.release(1)
		return
	}
	r.hb.Hold(m)
	if r.barrier.Active() {
		r.held = append(r.held, it)
		r.barrier.Hold(it.seq)
		return
	}
	r.sched.add(ctx, hard, it)
}

// checkBarrier lifts the barrier when ackflow.Barrier allows, and queues
// the held messages in stream order.
func (r *run) checkBarrier(ctx, hard context.Context) {
	ictx, cancel := context.WithTimeout(ctx, setupTimeout)
	info, err := r.cons.Info(ictx)
	cancel()
	if err != nil {
		r.e.log.Debug().Err(err).Msg("consumer info failed")
		info = nil
	}
	lift, timedOut := r.barrier.Lift(info)
	if !lift {
		return
	}
	if timedOut {
		r.e.log.Warn().Msg("previous run's commands did not all come back; resuming")
	}
	r.e.log.Info().Int("held", len(r.held)).Msg("previous run's commands done; resuming in order")
	slices.SortFunc(r.held, func(a, b *item) int { return cmp.Compare(a.seq, b.seq) })
	for _, it := range r.held {
		r.sched.add(ctx, hard, it)
	}
	r.held = nil
}

// process is the scheduler's step: handle the item, then settle it.
func (r *run) process(stop, hard context.Context, it *item) bool {
	d, ok := r.e.process(stop, hard, it)
	if !ok {
		return false
	}
	r.hb.Release(it.msg)
	if err := ackflow.Apply(it.msg, d); err != nil {
		r.e.log.Warn().Err(err).Str("subject", it.msg.Subject()).Str("action", d.Action.String()).
			Msg("settle failed; a redelivery will be answered from the store")
	}
	r.done(it) // after settling: a redelivery before it is dropped as a copy
	r.release(1)
	return true
}

// done forgets it as in hand, just before it is settled.
func (r *run) done(it *item) {
	r.mu.Lock()
	delete(r.inHand, it.seq)
	r.mu.Unlock()
}

// drain waits for running commands and RPC requests, up to DrainTimeout,
// then cancels what still runs, and hands every unsettled message back with
// NakWithDelay in stream order. All of them get the same delay, so they
// become due again in the order they were handed back: drainNakDelay, or
// the longest retry wait that was cut short, capped at Policy.BackoffMax so
// one room's long Retry-After does not hold every room back after a restart.
func (r *run) drain(cancelHard context.CancelFunc, rpc *rpcServer) {
	done := make(chan struct{})
	go func() { // owned: drain waits for done below
		r.sched.wait()
		rpc.wait()
		close(done)
	}()
	t := time.NewTimer(r.e.o.DrainTimeout)
	select {
	case <-done:
	case <-t.C:
		r.e.log.Warn().Dur("drain_timeout", r.e.o.DrainTimeout).Msg("commands still running at the drain deadline; cancelling them")
		cancelHard()
		<-done
	}
	t.Stop()
	left := append(r.sched.leftovers(), r.held...)
	r.held = nil
	if len(left) == 0 {
		return
	}
	slices.SortFunc(left, func(a, b *item) int { return cmp.Compare(a.seq, b.seq) })
	delay := drainNakDelay
	for _, it := range left {
		delay = max(delay, min(it.retryIn, r.e.o.Policy.BackoffMax))
	}
	for _, it := range left {
		r.hb.Release(it.msg)
		r.done(it)
		if err := ackflow.Apply(it.msg, ackflow.Decision{Action: ackflow.ActionRetry, Delay: delay, Reason: "shutdown"}); err != nil {
			r.e.log.Warn().Err(err).Str("subject", it.msg.Subject()).Msg("hand-back failed; redelivered after AckWait")
		}
		r.release(1)
	}
	// A round trip makes sure the server took the hand-backs before the
	// connection (or an embedded server) goes away; lost ones would wait
	// out the whole AckWait.
	if err := r.e.o.NC.FlushTimeout(2 * time.Second); err != nil {
		r.e.log.Warn().Err(err).Msg("hand-backs not confirmed; they may wait out AckWait")
	}
	r.e.log.Info().Int("handed_back", len(left)).Dur("delay", delay).Msg("unfinished commands handed back")
}
