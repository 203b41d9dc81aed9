package conntest

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/bridgeworks/bridge/connector"
)

// marker returns a unique text for one command.
func marker(what string) string { return "conntest-" + what + "-" + rand.Text()[:10] }

// testCommandErrors checks how Execute classifies each kind of failure.
func testCommandErrors(t *testing.T, e *env) {
	x, ok := e.c.(connector.Executor)
	if !ok {
		t.Skip("the connector is not a connector.Executor")
	}
	ctx := e.ctx(t)
	e.d.connect(ctx)
	room := e.p.Room(t)
	received := func(m string) int {
		n := 0
		for _, r := range e.p.Received(t, room) {
			if strings.Contains(r, m) {
				n++
			}
		}
		return n
	}

	okMark := marker("ok")
	if _, err := x.Execute(ctx, e.p.Command(room, okMark)); err != nil {
		t.Fatalf("Execute of a good command: %v", err)
	}
	if n := received(okMark); n != 1 {
		t.Fatalf("the platform received the good command %d times, want once", n)
	}

	for _, c := range []struct {
		what string
		cmd  connector.Command
	}{
		{"bad input", e.p.BadCommand(room)},
		{"an unknown command", connector.Command{ID: "conntest-unknown", Name: "conntest_no_such_command", Room: room, Args: json.RawMessage(`{}`)}},
	} {
		_, err := x.Execute(ctx, c.cmd)
		var re *connector.RequestError
		switch {
		case err == nil:
			t.Errorf("Execute of %s succeeded", c.what)
		case !errors.As(err, &re):
			t.Errorf("Execute of %s: %v (%T), want a connector.RequestError", c.what, err, err)
		case !connector.IsPermanent(err):
			t.Errorf("Execute of %s: %v is not permanent", c.what, err)
		}
	}

	for _, f := range []Fault{FaultRefuse, FaultRateLimit, FaultUnavailable, FaultTransport} {
		m := marker(f.String())
		e.p.Fail(t, room, f)
		_, err := x.Execute(ctx, e.p.Command(room, m))
		if err == nil && f == FaultTransport {
			// The connector retried safely (e.g. net/http replays a request
			// with an Idempotency-Key on a fresh connection): allowed, if
			// the platform executed the command once.
			if n := received(m); n != 1 {
				t.Errorf("transport: Execute hid the failure, but the platform executed the command %d times", n)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s: Execute succeeded", f)
			continue
		}
		var pe *connector.PlatformError
		var re *connector.RequestError
		isPE := errors.As(err, &pe)
		if errors.As(err, &re) {
			t.Errorf("%s: %v is a RequestError, but the input was good", f, err)
		}
		switch f {
		case FaultRefuse:
			if !isPE || pe.Status < 400 || pe.Status > 499 || pe.Retryable() {
				t.Errorf("refuse: %v (%T), want a non-retryable 4xx connector.PlatformError", err, err)
			}
			if !connector.IsPermanent(err) {
				t.Errorf("refuse: %v is not permanent", err)
			}
			if n := received(m); n != 0 {
				t.Errorf("refuse: the platform executed the refused command %d times", n)
			}
		case FaultRateLimit:
			if !isPE || pe.Status != http.StatusTooManyRequests || !pe.Retryable() {
				t.Errorf("rate_limit: %v (%T), want a retryable 429 connector.PlatformError", err, err)
			}
			if d := connector.RetryAfter(err); d < time.Second {
				t.Errorf("rate_limit: connector.RetryAfter = %s, want the platform's Retry-After (>= 1s)", d)
			}
		case FaultUnavailable:
			if !isPE || pe.Status < 500 || !pe.Retryable() {
				t.Errorf("unavailable: %v (%T), want a retryable 5xx connector.PlatformError", err, err)
			}
		case FaultTransport:
			if isPE {
				t.Errorf("transport: %v is a PlatformError, but the platform answered nothing", err)
			}
		}
		if f != FaultRefuse && connector.IsPermanent(err) {
			t.Errorf("%s: %v is permanent, want retryable", f, err)
		}
	}

	again := marker("again")
	if _, err := x.Execute(ctx, e.p.Command(room, again)); err != nil {
		t.Fatalf("Execute after the faults: %v", err)
	}
	if n := received(again); n != 1 {
		t.Errorf("the platform received the command after the faults %d times, want once", n)
	}
	e.close(t)
}

// testProcessing checks the ProcessingTracker ability on produced events.
func testProcessing(t *testing.T, e *env) {
	pt, ok := e.c.(connector.ProcessingTracker)
	if !ok {
		t.Skip("the connector is not a connector.ProcessingTracker")
	}
	x, ok := e.c.(connector.Executor)
	if !ok {
		t.Fatal("a ProcessingTracker must be a connector.Executor: the bridge executes its processing commands")
	}
	ctx := e.ctx(t)
	e.d.connect(ctx)
	ps := e.p.Produce(t, 2)
	e.d.receiveAll(t, ps)
	states, _ := e.p.(ProcessingStates)
	steps := [][]connector.ProcessingState{
		{connector.Processing, connector.Processed},
		{connector.Processing, connector.Failed},
	}
	for i, p := range ps {
		ev := e.d.events[p.Key]
		id, ok := pt.ProcessingRef(ev.Name, ev.Data)
		if !ok || id == "" {
			t.Errorf("ProcessingRef(%q, event %s) = %q, %v: want the platform's message id", ev.Name, p.Key, id, ok)
			continue
		}
		for _, bad := range []json.RawMessage{nil, json.RawMessage("not json"), json.RawMessage(`[]`)} {
			if id, ok := pt.ProcessingRef(ev.Name, bad); ok {
				t.Errorf("ProcessingRef(%q, %q) = %q, true: want false for data without a message", ev.Name, bad, id)
			}
		}
		for _, st := range steps[i] {
			reason := ""
			if st == connector.Failed {
				reason = "conntest: the worker failed"
			}
			cmd := pt.ProcessingCommand(st, ev.Room, id, reason)
			if cmd.Name == "" {
				t.Errorf("ProcessingCommand(%s) has no name", st)
				continue
			}
			if cmd.ID == "" {
				cmd.ID = marker(st.String())
			}
			if _, err := x.Execute(ctx, cmd); err != nil {
				t.Errorf("Execute(ProcessingCommand(%s, %s)) = %v", st, id, err)
				continue
			}
			if states == nil {
				continue
			}
			if got, ok := states.ProcessingState(t, ev.Room, id); !ok || got != st {
				t.Errorf("after ProcessingCommand(%s) the platform holds %v (known: %v) for %s", st, got, ok, id)
			}
		}
	}
	e.close(t)
}

// testReconciler checks that Reconcile finds an executed command and
// nothing for one never executed.
func testReconciler(t *testing.T, e *env) {
	r, ok := e.c.(connector.Reconciler)
	if !ok {
		t.Skip("the connector is not a connector.Reconciler")
	}
	x, ok := e.c.(connector.Executor)
	if !ok {
		t.Fatal("a Reconciler must be a connector.Executor")
	}
	ctx := e.ctx(t)
	e.d.connect(ctx)
	room := e.p.Room(t)
	since := time.Now().Add(-time.Second)
	cmd := e.p.Command(room, marker("reconcile"))
	resp, err := x.Execute(ctx, cmd)
	if err != nil {
		t.Fatalf("Execute: %v", err)
	}
	cmd.MaybeExecuted, cmd.Since = true, since
	recs, err := r.Reconcile(ctx, cmd)
	if err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	found := false
	for _, rec := range recs {
		found = found || rec.Ref == resp.Ref
	}
	if len(recs) == 0 || (resp.Ref != "" && !found) {
		t.Errorf("Reconcile after the command ran found %d records, none with Ref %q", len(recs), resp.Ref)
	}
	never := e.p.Command(room, marker("never"))
	never.MaybeExecuted, never.Since = true, since
	if recs, err := r.Reconcile(ctx, never); err != nil || len(recs) != 0 {
		t.Errorf("Reconcile of a command never executed = %d records, %v; want none", len(recs), err)
	}
	e.close(t)
}

// testStats checks that Stats is safe outside a session.
func testStats(t *testing.T, e *env) {
	sr, ok := e.c.(connector.StatsReporter)
	if !ok {
		t.Skip("the connector is not a connector.StatsReporter")
	}
	if st := sr.Stats(); st.Reconnects != 0 || st.GapFilled != 0 {
		t.Errorf("Stats before Connect = %+v, want zero counters", st)
	}
	e.d.connect(e.ctx(t))
	ps := e.p.Produce(t, 2)
	e.d.receiveAll(t, ps)
	mid := sr.Stats()
	e.close(t)
	end := sr.Stats()
	if end.Reconnects < mid.Reconnects || end.GapFilled < mid.GapFilled || end.MissedHeartbeats < mid.MissedHeartbeats {
		t.Errorf("Stats went back at Close: %+v, then %+v", mid, end)
	}
}

// testNotifier checks the Notifier ability the way the bridge's runner
// uses it: receive with TryReceive until it reports nothing, arm Notify,
// and go on only when the callback comes. Every produced event arrives
// once; nothing is handed over while nothing is there; after Close,
// TryReceive reports the end instead of nothing, and Notify calls back at
// once.
func testNotifier(t *testing.T, e *env) {
	n, ok := e.c.(connector.Notifier)
	if !ok {
		t.Skip("the connector is not a connector.Notifier")
	}
	e.d.connect(e.ctx(t))
	ctx := e.ctx(t)
	ready := make(chan struct{}, 1)
	notify := func() {
		select {
		case ready <- struct{}{}:
		default:
		}
	}
	var all []Produced
	// The second batch is produced only once the first is received and
	// Notify armed: only the callback can say it came.
	for batch := range 2 {
		want := e.p.Produce(t, 3)
		all = append(all, want...)
		missing := func() int {
			m := 0
			for _, p := range want {
				if e.d.count[p.Key] == 0 {
					m++
				}
			}
			return m
		}
		for missing() > 0 {
			ev, ack, ok, err := n.TryReceive()
			switch {
			case !ok:
				n.Notify(notify)
				select {
				case <-ready:
				case <-ctx.Done():
					t.Fatalf("batch %d: %d of %d produced events never notified within %s", batch, missing(), len(want), e.h.Timeout)
				}
				continue
			case err != nil:
				t.Fatalf("TryReceive with no fault injected: %v", err)
			case ack == nil:
				t.Fatalf("TryReceive returned event %q (%s) with a nil AckFunc", ev.Key, ev.Name)
			}
			e.d.record(t, ev)
			ack(ctx, nil)
		}
		// Drain what else is there (lifecycle events), then arm the
		// callback before the next batch.
		for {
			ev, ack, ok, err := n.TryReceive()
			if !ok {
				break
			}
			if err != nil {
				t.Fatalf("TryReceive with no fault injected: %v", err)
			}
			e.d.record(t, ev)
			ack(ctx, nil)
		}
		n.Notify(notify)
	}
	e.d.checkOnce(t, all)
	e.close(t)
	if _, _, ok, err := n.TryReceive(); !ok || err == nil {
		t.Errorf("TryReceive after Close: ok %v, err %v; want the end reported", ok, err)
	}
	called := make(chan struct{})
	n.Notify(func() { close(called) })
	select {
	case <-called:
	case <-ctx.Done():
		t.Error("Notify after Close never called back")
	}
}
