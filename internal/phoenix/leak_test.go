package phoenix

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestMain fails the run if any goroutine of the package's own code (not
// its tests) is still alive after every test has finished.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if leaked := waitNoLeaks(5 * time.Second); leaked != "" {
			fmt.Fprintf(os.Stderr, "leaked goroutines:\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

// ownFrames are functions that only run inside goroutines Run owns.
var ownFrames = []string{
	"phoenix.(*liveConn).readLoop",
	"phoenix.(*liveConn).writeLoop",
	"phoenix.(*liveConn).heartbeat",
	"phoenix.(*liveConn).shutdown",
	"phoenix.(*liveConn).close",
	"phoenix.(*Socket).Run",
	"phoenix.(*run).loop",
	"phoenix.(*stream).wait",
}

func waitNoLeaks(d time.Duration) string {
	deadline := time.Now().Add(d)
	for {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		var leaked []string
		for _, g := range strings.Split(string(buf), "\n\n") {
			for _, f := range ownFrames {
				if strings.Contains(g, f) {
					leaked = append(leaked, g)
					break
				}
			}
		}
		if len(leaked) == 0 || time.Now().After(deadline) {
			return strings.Join(leaked, "\n\n")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestNoGoroutineLeak is not parallel: parallel tests are paused while it
// runs, so the goroutine count is stable.
func TestNoGoroutineLeak(t *testing.T) {
	base := runtime.NumGoroutine()
	t.Run("cycle", func(t *testing.T) {
		ts := newTestServer(t)
		opts := fastOptions(ts.url())
		opts.HeartbeatInterval = 20 * time.Millisecond
		r := startSocket(t, opts)
		a := r.s.Channel("room:a", nil, nil)
		mustJoin(t, a)
		r.s.Drop()
		eventually(t, "rejoin", func() bool { return len(ts.find(joinsOf("room:a"))) >= 2 && a.Joined() })
		ts.setStall(true) // heartbeat timeout, reconnect loop
		eventually(t, "missed heartbeat", func() bool { return r.s.Stats().MissedHeartbeats > 0 })
		r.s.Stop(nil)
		if err := r.wait(t); err != nil {
			t.Fatalf("Run = %v", err)
		}
	})
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			t.Fatalf("goroutines: %d before, %d after\n%s", base, runtime.NumGoroutine(), waitNoLeaks(0))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestIdleSocketHoldsOneGoroutine: an open socket with a joined channel and
// nothing to send holds one goroutine of its own, the stream's waiter in
// its one-byte read; the reader, the heartbeat and the writer come and go.
// Not parallel, so the goroutines counted are this socket's.
func TestIdleSocketHoldsOneGoroutine(t *testing.T) {
	ts := newTestServer(t)
	opts := fastOptions(ts.url())
	opts.HeartbeatInterval = 50 * time.Millisecond
	opts.HTTPClient = &http.Client{Transport: &http.Transport{}}
	ctx, cancel := context.WithCancel(context.Background())
	s, ended := startRun(t, ctx, opts)
	t.Cleanup(func() {
		cancel()
		select {
		case <-ended:
		case <-time.After(10 * time.Second):
			t.Errorf("the run did not end after cancel")
		}
	})
	mustJoin(t, s.Channel("room:a", nil, nil))
	var got int
	var dump string
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, dump = socketGoroutines()
		if parkedOnWaiter(got, dump) || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !parkedOnWaiter(got, dump) {
		t.Fatalf("an idle socket holds %d goroutines, want 1 (the stream's waiter):\n%s", got, dump)
	}
	// Heartbeats keep flowing without a goroutine of their own.
	n := len(ts.find(func(f srvFrame) bool { return f.event == EventHeartbeat }))
	eventually(t, "heartbeats", func() bool {
		return len(ts.find(func(f srvFrame) bool { return f.event == EventHeartbeat })) >= n+3
	})
	if !s.Connected() {
		t.Fatalf("socket not connected")
	}
}

// socketGoroutines counts the goroutines running a Socket's or a live
// connection's code, and returns their stacks.
func socketGoroutines() (int, string) {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var own []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "phoenix.(*liveConn)") || strings.Contains(g, "phoenix.(*Socket)") ||
			strings.Contains(g, "phoenix.(*run)") || strings.Contains(g, "phoenix.(*stream)") {
			own = append(own, g)
		}
	}
	return len(own), strings.Join(own, "\n\n")
}

// parkedOnWaiter reports whether the socket's goroutines are one waiter in
// its one-byte read. A reader that runs on a former waiter's goroutine
// also has (*stream).wait at the bottom of its stack, so the reader's
// frames must be absent too.
func parkedOnWaiter(n int, dump string) bool {
	return n == 1 && strings.Contains(dump, "phoenix.(*stream).wait") && !strings.Contains(dump, "phoenix.(*liveConn).readLoop")
}
