package bridge

import (
	"context"
	"errors"
	"sync"

	"github.com/bridgeworks/bridge/retry"
)

// errParked comes back up a connection's calls (runConnection,
// supervisor.run, publisher.run) when its connector has nothing to hand
// over and the goroutine running it may end: each keeps what it needs to
// go on in its parked frame, and the next call continues from there.
var errParked = errors.New("connection parked")

// runner runs one connection on a goroutine that exists only while the
// connection has something to do. A connected, idle session whose
// connector is a connector.Notifier holds no goroutine of the bridge's
// (standing by for the lease, waiting to reconnect and waiting for the
// start pace still do): its publisher parks (see publisher.run), and the
// connector's notice of the next event, or the end of the session's
// context, wakes the runner, which starts a goroutine that continues where
// the last one parked. Connectors without Notifier keep their goroutine
// blocked in Receive, as before.
//
// wg counts connections, not goroutines: one Add when the runner is made
// (newRunner), one Done once its run returned for good, so a Wait never
// returns while a parked connection has cleaning up to do.
type runner struct {
	run  func() error // the connection's run; errParked when it parked
	done func()       // called once the run returned anything else
	wg   *sync.WaitGroup

	mu      sync.Mutex
	running bool // a goroutine runs it
	woken   bool // a wake-up came while it ran: it must not end before running again
}

// newRunner counts the connection in wg; the first wake starts its run.
func newRunner(wg *sync.WaitGroup, run func() error, done func()) *runner {
	r := &runner{run: run, done: done, wg: wg}
	wg.Add(1)
	return r
}

// wake starts the runner's goroutine, or, while one runs, keeps it from
// ending before it ran again.
func (r *runner) wake() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.running {
		r.woken = true
		return
	}
	r.running = true
	go r.loop() // owned: it parks or ends the run; wg waits for the run's end
}

func (r *runner) loop() {
	for {
		r.mu.Lock()
		r.woken = false
		r.mu.Unlock()
		if err := r.run(); !errors.Is(err, errParked) {
			r.done()
			r.wg.Done()
			return
		}
		r.mu.Lock()
		if !r.woken {
			r.running = false
			r.mu.Unlock()
			return
		}
		r.mu.Unlock()
	}
}

// parkedSession is what a parked supervisor keeps: its reconnect waits.
type parkedSession struct {
	bo, long *retry.Backoff
}

// leaseTerm is one term of a connection's lease: what runConnection keeps
// while it holds it, parked or not. The context is kept here because the
// goroutine that made it may have ended (parked); it is cancelled by lease
// loss, move or shutdown, and its end wakes a parked runner.
type leaseTerm struct {
	lctx    context.Context
	cancel  context.CancelFunc
	unkeep  func() error
	unwatch func() string
	paced   bool         // the start pace let it start: its session runs
	started []returnPart // the parts of the return path that started
}

// connCtl stops a running connection. The connection keeps no context of
// its own: each phase of its run (standing by and then holding a lease
// term, or handing over) takes one from the bridge's with phase, and stop
// cancels the current one and every later one. A context per connection
// beside its term's cost each idle connection ~0.45 KiB: the context, its
// Done channel and the children map holding the term's.
type connCtl struct {
	parent context.Context // the bridge's
	// wake wakes the connection's runner: stop calls it once the phase is
	// cancelled, so that a parked connection sees its end (see
	// publisher.run). Set once, before the runner first runs.
	wake func()

	mu      sync.Mutex
	stopped bool
	cancel  context.CancelFunc // the current phase's
}

// phase returns a context for the next phase of the connection's run,
// cancelled at once when the connection stopped. Call its cancel when the
// phase ends.
func (c *connCtl) phase() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(c.parent)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		cancel()
	} else {
		c.cancel = cancel
	}
	return ctx, cancel
}

// stop ends the connection: its current phase's context and every later
// one; then it wakes the runner.
func (c *connCtl) stop() {
	c.mu.Lock()
	c.stopped = true
	cancel := c.cancel
	c.cancel = nil
	c.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	if c.wake != nil {
		c.wake()
	}
}

// err is context.Canceled once the connection stopped, else the bridge
// context's error.
func (c *connCtl) err() error {
	c.mu.Lock()
	stopped := c.stopped
	c.mu.Unlock()
	if stopped {
		return context.Canceled
	}
	return c.parent.Err()
}
