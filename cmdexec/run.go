package cmdexec

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bridgeworks/bridge/ackflow"
	"github.com/bridgeworks/bridge/consume"
	"github.com/bridgeworks/bridge/natsbus"
	"github.com/bridgeworks/bridge/subjects"
)

// drainNakDelay is the least delay of the NakWithDelay that hands back
// unfinished commands at shutdown.
const drainNakDelay = time.Second

// Run is [Executor.Start], then [Executor.Drain] once ctx ends: it serves
// RPC and executes durable commands on the consumer engine (package
// consume) until ctx ends; then it drains (see the package doc) and
// returns nil. Setup failures are retried with backoff until ctx ends.
// Only one Run (or Start) of an Executor may be active at a time, and only
// one executor per connection should consume at a time: per-room order
// holds within one consumer's client.
func (e *Executor) Run(ctx context.Context) error {
	if err := e.Start(ctx); err != nil {
		return err
	}
	e.Drain()
	return nil
}

// active is what a started executor keeps until its Drain.
type active struct {
	eng      *consume.Engine
	stopped  <-chan struct{} // Start's ctx.Done()
	stopMux  func()          // stops a Mux of the executor's own; nil with Options.Mux
	drainRPC func()
}

// Start subscribes RPC and starts the durable commands' consumer engine,
// and returns at once (an error only for bad options or a failed RPC
// subscription). While idle a started executor holds no goroutine of its
// own (with Options.Mux and Options.Heartbeat): the engine parks, RPC
// workers start on demand. When ctx ends no new command starts; the
// caller then calls [Executor.Drain], which drains both.
func (e *Executor) Start(ctx context.Context) (err error) {
	defer wrapErr(&err, "cmdexec: %s", e.conn.Name)
	if !e.running.CompareAndSwap(false, true) {
		return errors.New("already running")
	}
	a := &active{stopped: ctx.Done()}
	defer func() {
		if err != nil {
			if a.stopMux != nil {
				a.stopMux()
			}
			e.running.Store(false)
		}
	}()

	// RPC serves as soon as Start is called: it needs no consumer. Its
	// requests get DrainTimeout to finish once ctx ends, like durable
	// commands.
	mux := e.o.Mux
	if mux == nil {
		mux = natsbus.NewMux(0)
		muxCtx, stopMux := context.WithCancel(context.WithoutCancel(ctx))
		var bg sync.WaitGroup
		bg.Go(func() { mux.Run(muxCtx) }) // owned: stopped and waited for by Drain, once RPC is drained
		a.stopMux = func() {
			stopMux()
			bg.Wait()
		}
	}
	rpc, err := e.startRPC(ctx, mux)
	if err != nil {
		return err
	}
	a.drainRPC = func() {
		rpc.stop()
		e.drainRPC(rpc)
		rpc.cancelHard()
	}
	tmpl := e.f.tmpl
	if mux != e.o.Mux { // a Mux of its own: engine options of its own
		if tmpl, err = consume.NewTemplate(e.f.engineOptions(mux)); err != nil {
			a.drainRPC()
			return err
		}
	}
	eng, err := tmpl.Start(ctx, e.engineSpec(), e.process)
	if err != nil {
		a.drainRPC()
		return err
	}
	a.eng = eng
	e.act = a
	return nil
}

// Drain waits until the context given to Start has ended, then drains the
// durable commands (the engine's drain) and RPC side by side, each within
// DrainTimeout, and returns once both are done. Call it once after each
// successful Start, from the goroutine that called Start, at once: RPC
// requests are taken until Drain begins. (The RPC drain starts here, not
// from a context.AfterFunc on Start's ctx: one costs every idle
// connection about 0.2 KiB.)
func (e *Executor) Drain() {
	a := e.act
	if a == nil {
		return
	}
	e.act = nil
	<-a.stopped
	var rpcDrain sync.WaitGroup
	rpcDrain.Go(a.drainRPC) // owned: waited for below
	a.eng.Drain()
	rpcDrain.Wait()
	if a.stopMux != nil {
		a.stopMux()
	}
	e.log.Info().Msg("command executor stopped")
	e.running.Store(false)
}

// engineOptions is the engine configuration every executor of the family
// shares: all but its Spec (engineSpec). The engine parks while no command
// comes: a command published on the connection's subjects rings it
// through mux.
func (f *Family) engineOptions(mux *natsbus.Mux) consume.Options {
	o := &f.o
	return consume.Options{
		JS: o.JS, NC: o.NC, Stream: subjects.StreamName(o.Prefix, subjects.StreamCommands),
		Consumer: jetstream.ConsumerConfig{
			DeliverPolicy: jetstream.DeliverAllPolicy,
			// A consumer held is pulled every IdleWake (30s) at least.
			InactiveThreshold: o.InactiveThreshold,
		},
		MaxParallel:   o.MaxParallelRooms,
		MaxAckPending: o.MaxAckPending,
		AckWait:       o.AckWait,
		FetchWait:     o.FetchWait,
		DrainTimeout:  o.DrainTimeout,
		MinHandBack:   drainNakDelay,
		// One room's long Retry-After must not hold every room back after
		// a restart.
		MaxHandBack: o.Policy.Retry.Max,
		Heartbeat:   o.Heartbeat,
		Mux:         mux,
		IdleWheel:   o.IdleWheel,
	}
}

// engineSpec is the connection's part of its engine's configuration.
func (e *Executor) engineSpec() consume.Spec {
	filter := e.conn.Filter(subjects.KindCommand)
	return consume.Spec{
		Durable:       ConsumerName(e.conn.Name),
		Description:   "bridge: commands of connection " + e.conn.Name,
		FilterSubject: filter,
		RoomOf:        func(subject string) string { return e.conn.RoomToken(subjects.KindCommand, subject) },
		Doorbell:      []string{filter},
		Release:       e.release,
		Setup: func(ctx context.Context) error {
			if _, err := e.bucket(ctx); err != nil {
				return err
			}
			dup := e.o.StreamDuplicates
			if dup <= 0 {
				st, err := e.o.JS.Stream(ctx, subjects.StreamName(e.o.Prefix, subjects.StreamCommands))
				if err != nil {
					return err
				}
				dup = st.CachedInfo().Config.Duplicates
			}
			e.firstLookup.Store(e.o.ExecutedTTL > dup)
			return nil
		},
		Ready: func(*jetstream.ConsumerInfo, bool) {
			e.log.Info().Str("consumer", ConsumerName(e.conn.Name)).Msg("command executor running")
		},
		Log: e.log,
	}
}

// drainRPC waits for the RPC requests still queued or running, up to
// DrainTimeout, then cancels their calls.
func (e *Executor) drainRPC(rpc *rpcServer) {
	done := make(chan struct{})
	go func() { // owned: waited for below
		rpc.wait()
		close(done)
	}()
	t := time.NewTimer(e.o.DrainTimeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		e.log.Warn().Int64("drain_timeout_ms", e.o.DrainTimeout.Milliseconds()).Msg("rpc requests still running at the drain deadline; cancelling them")
		rpc.cancelHard()
		<-done
	}
}

// settleDecision is how a finished durable command is settled: Ack, or
// Term once it is dead-lettered.
func settleDecision(res subjects.Result) ackflow.Decision {
	if res.OK || tooLarge(res) {
		return ackflow.Decision{Action: ackflow.ActionAck}
	}
	return ackflow.Decision{Action: ackflow.ActionTerm, Reason: oneLine(reasonOf(res), 256)}
}
