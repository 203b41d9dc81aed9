package conntest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/bridgeworks/bridge/connector"
)

// Harness is what a platform's test gives the suite.
type Harness struct {
	// New starts a fresh emulator (stopped at t's cleanup) and builds a
	// connector against it without connecting. Each subtest calls it once.
	New func(t *testing.T) (connector.Connector, Platform)
	// Packages are import paths, besides the connector's own package, whose
	// goroutines belong to the connector (a protocol library it uses, e.g.
	// internal/phoenix). Goroutines of the emulator must not match.
	Packages []string
	// Timeout bounds each wait of the suite, default 20s.
	Timeout time.Duration
}

// Platform drives one emulator and knows the platform's commands.
type Platform interface {
	// Produce makes the platform send n new inbound events that the
	// connector turns into events (not lifecycle ones), spread over rooms,
	// and returns each one's room and the [connector.Event.Key] it will
	// carry. It may be called while the connector is disconnected.
	Produce(t *testing.T, n int) []Produced
	// Drop cuts every socket or stream of the connector without a goodbye,
	// as a network failure does.
	Drop(t *testing.T)
	// Malformed sends the connector's open socket or stream one frame that
	// does not parse.
	Malformed(t *testing.T)
	// Room returns a room the connector's account may send commands to.
	Room(t *testing.T) string
	// Command returns a command that succeeds in room and leaves marker
	// where [Platform.Received] finds it. For a [connector.Reconciler], it
	// is a command the reconciler can find again.
	Command(room, marker string) connector.Command
	// BadCommand returns a command with bad input that the connector
	// refuses without calling the platform.
	BadCommand(room string) connector.Command
	// Fail makes the platform answer the next command in room with f.
	Fail(t *testing.T, room string, f Fault)
	// Received returns what the platform got from the commands it executed
	// in room (each one's text, containing its marker).
	Received(t *testing.T, room string) []string
}

// ProcessingStates is implemented by the [Platform] of a platform that keeps
// processing state: the suite then checks the state its commands left.
type ProcessingStates interface {
	// ProcessingState returns the state the platform holds for message id
	// in room, false when it holds none.
	ProcessingState(t *testing.T, room, id string) (connector.ProcessingState, bool)
}

// Closer is implemented by the [Platform] of a platform whose emulator
// sees a connector's Close a moment after Close returned (a socket's close
// handshake ends before the server forgets the socket): Closed waits until
// it has, so an event produced for the next session never goes to a
// socket on its way out.
type Closer interface {
	Closed(t *testing.T)
}

// Produced is one inbound event an emulator produced.
type Produced struct {
	Room string // the platform's room id
	Key  string // the Key of the event the connector makes of it
}

// Fault is a way a platform answers a command badly.
type Fault int

// The faults [Platform.Fail] injects.
const (
	FaultRefuse      Fault = iota + 1 // a 4xx refusal other than 408, 425 and 429 (e.g. 403)
	FaultRateLimit                    // 429 with a Retry-After of at least one second
	FaultUnavailable                  // a 5xx
	FaultTransport                    // the connection closes without an answer
)

func (f Fault) String() string {
	switch f {
	case FaultRefuse:
		return "refuse"
	case FaultRateLimit:
		return "rate_limit"
	case FaultUnavailable:
		return "unavailable"
	case FaultTransport:
		return "transport"
	}
	return fmt.Sprintf("fault(%d)", int(f))
}

// Run runs every subtest of the suite against h. It does not call
// t.Parallel (see the package doc).
func Run(t *testing.T, h Harness) {
	t.Helper()
	if h.New == nil {
		t.Fatal("conntest: Harness.New is nil")
	}
	if h.Timeout <= 0 {
		h.Timeout = 20 * time.Second
	}
	for _, st := range []struct {
		name string
		fn   func(*testing.T, *env)
	}{
		{"Lifecycle", testLifecycle},
		{"CloseIdempotent", testCloseIdempotent},
		{"Reconnect", testReconnect},
		{"MalformedFrame", testMalformed},
		{"CommandErrors", testCommandErrors},
		{"ProcessingTracker", testProcessing},
		{"Reconciler", testReconciler},
		{"Stats", testStats},
		{"Notifier", testNotifier},
	} {
		t.Run(st.name, func(t *testing.T) {
			e := newEnv(t, h)
			st.fn(t, e)
		})
	}
}

// env is one subtest's connector, emulator and driver.
type env struct {
	h    Harness
	c    connector.Connector
	p    Platform
	d    *driver
	pkgs []string
}

func newEnv(t *testing.T, h Harness) *env {
	t.Helper()
	c, p := h.New(t)
	if c == nil || p == nil {
		t.Fatal("conntest: Harness.New returned a nil connector or platform")
	}
	pkgs := append([]string{pkgPath(c)}, h.Packages...)
	before := goroutinesOf(pkgs)
	e := &env{h: h, c: c, p: p, pkgs: pkgs, d: newDriver(t, c, h.Timeout)}
	// Registered after the emulator's cleanup, so it runs before it: the
	// connector is closed while its platform is still up, then checked.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), h.Timeout)
		defer cancel()
		if err := c.Close(ctx); err != nil {
			t.Errorf("Close at the end: %v", err)
		}
		checkNoLeak(t, pkgs, before, h.Timeout)
	})
	return e
}

// pkgPath is the import path of the package that defines c's type.
func pkgPath(c connector.Connector) string {
	ty := reflect.TypeOf(c)
	for ty.Kind() == reflect.Pointer {
		ty = ty.Elem()
	}
	return ty.PkgPath()
}

func (e *env) ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), e.h.Timeout)
	t.Cleanup(cancel)
	return ctx
}

func (e *env) close(t *testing.T) {
	t.Helper()
	if err := e.c.Close(e.ctx(t)); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if c, ok := e.p.(Closer); ok {
		c.Closed(t)
	}
}

// testLifecycle: connect, receive with acks, close, and a second session on
// the same connector that does not bring the acked events back.
func testLifecycle(t *testing.T, e *env) {
	e.d.connect(e.ctx(t))
	first := e.p.Produce(t, 4)
	e.d.receiveAll(t, first)
	e.d.strict(first)
	e.close(t)

	e.d.connect(e.ctx(t))
	second := e.p.Produce(t, 4)
	e.d.receiveAll(t, second)
	e.d.strict(second)
	e.d.checkOnce(t, append(first, second...))
	e.close(t)
	if e.d.reconnects > 0 {
		t.Errorf("Receive failed %d times without any fault injected: %v", e.d.reconnects, e.d.lastErr)
	}
}

// testCloseIdempotent: Close before Connect and twice after; Receive
// outside a session; Receive ends with its context.
func testCloseIdempotent(t *testing.T, e *env) {
	ctx := e.ctx(t)
	if err := e.c.Close(ctx); err != nil {
		t.Fatalf("Close before Connect: %v", err)
	}
	if err := e.c.Close(ctx); err != nil {
		t.Fatalf("second Close before Connect: %v", err)
	}
	notConnected(t, e, "before Connect")

	e.d.connect(ctx)
	// Receive returns once its context ends (lifecycle events may come first).
	rctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	for {
		_, ack, err := e.c.Receive(rctx)
		if err != nil {
			if rctx.Err() == nil {
				t.Errorf("Receive with no event and no fault: %v (want it to wait for its context)", err)
			}
			break
		}
		ack(ctx, nil)
	}
	cancel()

	e.close(t)
	if err := e.c.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	notConnected(t, e, "after Close")
}

// notConnected checks that Receive outside a session fails at once with
// ErrNotConnected instead of blocking.
func notConnected(t *testing.T, e *env, when string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), e.h.Timeout)
	defer cancel()
	_, _, err := e.c.Receive(ctx)
	switch {
	case err == nil:
		t.Fatalf("Receive %s returned an event", when)
	case ctx.Err() != nil:
		t.Fatalf("Receive %s blocked until its context ended", when)
	case !errors.Is(err, connector.ErrNotConnected):
		t.Errorf("Receive %s: %v, want connector.ErrNotConnected", when, err)
	}
}

// testReconnect: a loss while events are produced, as the bridge's
// supervisor sees it.
func testReconnect(t *testing.T, e *env) {
	var before uint64
	sr, stats := e.c.(connector.StatsReporter)
	if stats {
		before = sr.Stats().Reconnects
	}
	e.d.connect(e.ctx(t))
	steady := e.p.Produce(t, 4)
	e.d.receiveAll(t, steady)
	e.d.strict(steady)

	// Some events go out before the loss (possibly not received yet), some
	// while the connection is down.
	inFlight := e.p.Produce(t, 3)
	e.p.Drop(t)
	down := e.p.Produce(t, 3)
	lost := append(inFlight, down...)
	e.d.receiveAll(t, lost)
	e.d.strict(lost) // all acked: from here on they must not come back

	after := e.p.Produce(t, 4)
	e.d.receiveAll(t, after)
	e.d.strict(after)
	e.d.checkOnce(t, append(steady, after...))
	if stats {
		if n := sr.Stats().Reconnects; n < before {
			t.Errorf("Stats().Reconnects went back from %d to %d", before, n)
		} else if n == before && e.d.reconnects == 0 {
			t.Errorf("the connection was cut, but Receive reported no error and Stats().Reconnects stayed %d", n)
		}
	}
	e.close(t)
}

// testMalformed: a frame that does not parse, then events.
func testMalformed(t *testing.T, e *env) {
	e.d.connect(e.ctx(t))
	first := e.p.Produce(t, 1)
	e.d.receiveAll(t, first) // the session is up and delivering
	e.d.strict(first)
	e.p.Malformed(t)
	next := e.p.Produce(t, 3)
	e.d.receiveAll(t, next)
	e.d.strict(next)
	e.d.checkOnce(t, first)
	e.close(t)
}
