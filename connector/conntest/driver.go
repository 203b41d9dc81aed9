package conntest

import (
	"context"
	"testing"
	"time"

	"github.com/bridgeworks/bridge/connector"
)

// driver plays the bridge's supervisor: it receives and acks every event,
// and on a Receive error that is not permanent it Closes and Connects
// again. It records what arrived.
type driver struct {
	t       *testing.T
	c       connector.Connector
	timeout time.Duration

	count      map[string]int             // times each key was received
	events     map[string]connector.Event // first copy of each key
	settled    map[string]bool            // keys that must not be received again
	doubles    []string                   // settled keys received again
	reconnects int                        // Close+Connect after a Receive error
	lastErr    error                      // the latest Receive error
}

func newDriver(t *testing.T, c connector.Connector, timeout time.Duration) *driver {
	return &driver{t: t, c: c, timeout: timeout, count: map[string]int{}, events: map[string]connector.Event{}, settled: map[string]bool{}}
}

// connect calls Connect until it succeeds, as the supervisor does with a
// short backoff; a permanent error or the deadline fails the test.
func (d *driver) connect(ctx context.Context) {
	d.t.Helper()
	wait := 5 * time.Millisecond
	for {
		err := d.c.Connect(ctx)
		if err == nil {
			return
		}
		if connector.IsPermanent(err) {
			d.t.Fatalf("Connect: permanent error: %v", err)
		}
		if ctx.Err() != nil {
			d.t.Fatalf("Connect did not succeed before the deadline: %v", err)
		}
		cctx, cancel := context.WithTimeout(context.Background(), d.timeout)
		_ = d.c.Close(cctx) // a failed Connect may leave a half-open session
		cancel()
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
		wait = min(wait*2, 200*time.Millisecond)
	}
}

// receiveAll receives (and acks) until every produced event arrived at
// least once, within the suite's timeout.
func (d *driver) receiveAll(t *testing.T, want []Produced) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d.timeout)
	defer cancel()
	missing := func() []string {
		var out []string
		for _, p := range want {
			if d.count[p.Key] == 0 {
				out = append(out, p.Key)
			}
		}
		return out
	}
	for len(missing()) > 0 {
		ev, ack, err := d.c.Receive(ctx)
		if err != nil {
			if ctx.Err() != nil {
				t.Fatalf("%d of %d produced events never arrived within %s: %q (last Receive error: %v)",
					len(missing()), len(want), d.timeout, missing(), d.lastErr)
			}
			if connector.IsPermanent(err) {
				t.Fatalf("Receive: permanent error with no permanent fault injected: %v", err)
			}
			d.lastErr = err
			d.reconnects++
			cctx, ccancel := context.WithTimeout(context.Background(), d.timeout)
			if cerr := d.c.Close(cctx); cerr != nil {
				t.Errorf("Close after the Receive error %q: %v", err, cerr)
			}
			ccancel()
			d.connect(ctx)
			continue
		}
		if ack == nil {
			t.Fatalf("Receive returned event %q (%s) with a nil AckFunc", ev.Key, ev.Name)
		}
		d.record(t, ev)
		ack(ctx, nil)
	}
	for _, p := range want {
		if got := d.events[p.Key].Room; got != p.Room {
			t.Errorf("event %s arrived in room %q, produced in %q", p.Key, got, p.Room)
		}
	}
}

func (d *driver) record(t *testing.T, ev connector.Event) {
	t.Helper()
	if ev.Lifecycle != "" {
		return // lifecycle: the bridge publishes it on P.sys…, nothing to match
	}
	if ev.Name == "" {
		t.Errorf("event %q has no name", ev.Key)
	}
	if ev.Key == "" {
		t.Errorf("event %q in room %q has no key", ev.Name, ev.Room)
		return
	}
	if d.settled[ev.Key] {
		d.doubles = append(d.doubles, ev.Key)
		t.Errorf("event %s (%s) received again after it was acked and no loss could have left it unacked", ev.Key, ev.Name)
	}
	d.count[ev.Key]++
	if _, ok := d.events[ev.Key]; !ok {
		d.events[ev.Key] = ev
	}
}

// strict marks events as settled: each was acked, so receiving it again
// from now on is a double.
func (d *driver) strict(ps []Produced) {
	for _, p := range ps {
		d.settled[p.Key] = true
	}
}

// checkOnce fails for each event not received exactly once.
func (d *driver) checkOnce(t *testing.T, ps []Produced) {
	t.Helper()
	for _, p := range ps {
		if n := d.count[p.Key]; n != 1 {
			t.Errorf("event %s received %d times, want once", p.Key, n)
		}
	}
}
