package natsbus_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bridgeworks/bridge/internal/testutil"
	"github.com/bridgeworks/bridge/natsbus"
)

// TestMuxServesManySubscriptions: requests to many subscriptions of one
// Mux are all answered by its one goroutine; the subscriptions are channel
// subscriptions, which nats.go serves without a goroutine each.
func TestMuxServesManySubscriptions(t *testing.T) {
	t.Parallel()
	s := testutil.NATS(t)
	ctx, cancel := context.WithCancel(context.Background())
	x := natsbus.NewMux(0)
	done := make(chan struct{})
	go func() { defer close(done); x.Run(ctx) }()
	defer func() { cancel(); <-done }()

	const n = 200
	var subs []*nats.Subscription
	for i := range n {
		sub, err := x.QueueSubscribe(s.NC, fmt.Sprintf("mux.%d.>", i), "q", func(m *nats.Msg) { _ = m.Respond([]byte(m.Subject)) })
		if err != nil {
			t.Fatal(err)
		}
		if sub.Type() != nats.ChanSubscription {
			t.Fatalf("subscription type %v: nats.go runs a goroutine for it", sub.Type())
		}
		subs = append(subs, sub)
	}
	for i := range n {
		subj := fmt.Sprintf("mux.%d.x", i)
		r, err := s.NC.Request(subj, nil, 5*time.Second)
		if err != nil {
			t.Fatalf("request %s: %v", subj, err)
		}
		if string(r.Data) != subj {
			t.Fatalf("request %s answered %q", subj, r.Data)
		}
	}
	// Unsubscribed: no callback, so no responder.
	if err := x.Unsubscribe(subs[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := s.NC.Request("mux.0.x", nil, 5*time.Second); !errors.Is(err, nats.ErrNoResponders) {
		t.Fatalf("request after Unsubscribe: %v, want no responders", err)
	}
	if d := x.Dropped(); d != 0 {
		t.Fatalf("dropped %d", d)
	}
}

// TestMuxFullFailsLoudly: with the channel full (Run not serving yet), a
// message is dropped, counted, and reported to the connection's error
// handler as a slow consumer; what was queued is still delivered.
func TestMuxFullFailsLoudly(t *testing.T) {
	t.Parallel()
	s := testutil.NATS(t)
	slow := make(chan error, 16)
	nc, err := nats.Connect(s.URL, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { slow <- err }))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	x := natsbus.NewMux(1)
	var got atomic.Int32
	if _, err := x.QueueSubscribe(nc, "full.>", "", func(*nats.Msg) { got.Add(1) }); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil { // the server has the subscription
		t.Fatal(err)
	}
	for i := range 3 {
		if err := s.NC.Publish(fmt.Sprint("full.", i), nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.NC.Flush(); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return x.Dropped() == 2 }, "dropped %d of 3, want 2", x.Dropped())
	select {
	case err := <-slow:
		if !errors.Is(err, nats.ErrSlowConsumer) {
			t.Fatalf("error handler got %v, want a slow consumer", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no slow-consumer error reported")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); x.Run(ctx) }()
	defer func() { cancel(); <-done }()
	testutil.Eventually(t, 10*time.Second, func() bool { return got.Load() == 1 }, "queued message delivered (%d)", got.Load())
}

// TestMuxReconnected: Reconnected calls every registered callback, and
// none once removed.
func TestMuxReconnected(t *testing.T) {
	t.Parallel()
	mux := natsbus.NewMux(0)
	var a, b atomic.Int32
	removeA := mux.OnReconnect(func() { a.Add(1) })
	removeB := mux.OnReconnect(func() { b.Add(1) })
	mux.Reconnected()
	removeA()
	mux.Reconnected()
	removeB()
	mux.Reconnected()
	if a.Load() != 1 || b.Load() != 2 {
		t.Fatalf("callbacks called %d and %d times, want 1 and 2", a.Load(), b.Load())
	}
}
