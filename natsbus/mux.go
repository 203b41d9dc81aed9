package natsbus

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go"
)

// DefaultMuxQueue is the capacity of a [Mux]'s channel when NewMux is given
// none.
const DefaultMuxQueue = 8192

// Mux delivers the messages of many core subscriptions through one
// channel and one goroutine ([Mux.Run]). nats.go gives every subscription
// with a callback a goroutine of its own; a process subscribing once per
// connection (RPC requests, dispatch replies) would hold thousands of
// idle ones. Through a Mux an idle subscription costs a map entry.
//
// Callbacks run one after another on Run's goroutine, so each must return
// at once (queue the message for a worker, or answer with a buffered
// publish) and must not call the Mux. The channel is bounded: when it is full nats.go drops the
// message and reports a slow consumer to the connection's error handler
// (logged by [Connect] with the subscription's subject) and Dropped counts
// it, so a flood fails loudly instead of growing memory.
type Mux struct {
	ch chan *nats.Msg

	mu   sync.RWMutex
	subs map[*nats.Subscription]func(*nats.Msg)

	stray atomic.Uint64 // messages of subscriptions already ended

	recMu     sync.Mutex
	reconnect map[uint64]func() // OnReconnect's callbacks by id
	recNext   uint64
}

// NewMux returns a Mux whose channel holds queue messages (default
// DefaultMuxQueue when queue <= 0). Start [Mux.Run] before subscribing.
func NewMux(queue int) *Mux {
	if queue <= 0 {
		queue = DefaultMuxQueue
	}
	return &Mux{ch: make(chan *nats.Msg, queue), subs: map[*nats.Subscription]func(*nats.Msg){}, reconnect: map[uint64]func(){}}
}

// OnReconnect registers fn to be called by [Mux.Reconnected]; remove
// unregisters it. fn must return at once (it only signals).
func (x *Mux) OnReconnect(fn func()) (remove func()) {
	x.recMu.Lock()
	defer x.recMu.Unlock()
	id := x.recNext
	x.recNext++
	x.reconnect[id] = fn
	return func() {
		x.recMu.Lock()
		delete(x.reconnect, id)
		x.recMu.Unlock()
	}
}

// Reconnected calls every OnReconnect callback: wire it to the
// connection's reconnect handler ([Options.Reconnected]). Core messages
// published while the connection was down never reach its subscriptions;
// a callback is where their owner catches up.
func (x *Mux) Reconnected() {
	x.recMu.Lock()
	fns := make([]func(), 0, len(x.reconnect))
	for _, fn := range x.reconnect {
		fns = append(fns, fn)
	}
	x.recMu.Unlock()
	for _, fn := range fns {
		fn()
	}
}

// Run calls each message's callback until ctx ends. Stop it only after
// every subscription made through the Mux ended: messages still queued
// then are dropped.
func (x *Mux) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-x.ch:
			// Held across the callback: Unsubscribe waits for it, so no
			// callback runs once Unsubscribe returned.
			x.mu.RLock()
			if fn := x.subs[m.Sub]; fn != nil {
				fn(m)
			} else {
				x.stray.Add(1) // unsubscribed while it was queued: as if it came after
			}
			x.mu.RUnlock()
		}
	}
}

// QueueSubscribe subscribes nc to subject in queue group queue ("" for
// none), with fn called on Run's goroutine for each message. End it with
// [Mux.Unsubscribe].
func (x *Mux) QueueSubscribe(nc *nats.Conn, subject, queue string, fn func(*nats.Msg)) (*nats.Subscription, error) {
	if fn == nil {
		return nil, errors.New("natsbus: mux subscription without a callback")
	}
	// The entry must exist before the first message can arrive, and that
	// may be before ChanQueueSubscribe returns: hold the write lock across.
	x.mu.Lock()
	defer x.mu.Unlock()
	sub, err := nc.ChanQueueSubscribe(subject, queue, x.ch)
	if err != nil {
		return nil, err
	}
	x.subs[sub] = fn
	return sub, nil
}

// Unsubscribe ends sub; once it returns fn is not called again.
func (x *Mux) Unsubscribe(sub *nats.Subscription) error {
	err := sub.Unsubscribe()
	x.mu.Lock()
	delete(x.subs, sub)
	x.mu.Unlock()
	return err
}

// Dropped is the number of messages lost on the way: those nats.go could
// not queue because the channel was full (summed over the live
// subscriptions), and those whose subscription ended while they waited.
func (x *Mux) Dropped() uint64 {
	n := x.stray.Load()
	x.mu.RLock()
	defer x.mu.RUnlock()
	for sub := range x.subs {
		if d, err := sub.Dropped(); err == nil {
			n += uint64(d)
		}
	}
	return n
}
