package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/emulator/bandemu"
	"github.com/bridgeworks/bridge/internal/testutil"
)

// Two replicas with the same config share one NATS: only one holds the
// platform connection; when it stops, the other takes over.
func TestLeaseOneReplicaHoldsTheConnection(t *testing.T) {
	t.Parallel()
	srv := testutil.NATS(t)
	env := newBandEnv(t, bandemu.Options{})
	room := env.emu.AddRoom("ops", env.user.ID)
	spec := func(owner string) bridgeSpec {
		s := env.spec
		s.config = fmt.Sprintf("[lease]\nttl = \"1s\"\nowner = %q\n", owner) + s.config
		s.natsURL = srv.URL
		return s
	}
	a := runBridge(t, spec("replica-a"))
	waitState(t, a, StateConnected)
	b := runBridge(t, spec("replica-b"))
	// The connection stays on a or moves to b (the one it is assigned to).
	runner, other := waitOneRuns(t, a, b)
	if n := env.emu.Connections(); n != 1 {
		t.Fatalf("%d platform sockets, want 1", n)
	}
	runner.stop()
	waitState(t, other, StateConnected)
	b = other
	m := env.emu.PostUserMessage(room.ID, env.user.ID, "@Bridge Bot after failover")
	testutil.Eventually(t, 20*time.Second, func() bool {
		_, count := storedMessages(t, b.js)
		return count[m.ID] == 1
	}, "message stored by the new holder")
}

// connStatus reads the first connection's entry on /status (zero when the
// bridge does not answer). It does not fail the test, so a watching
// goroutine may use it.
func connStatus(addr string) ConnStatus {
	resp, err := http.Get("http://" + addr + "/status")
	if err != nil {
		return ConnStatus{}
	}
	defer resp.Body.Close()
	var st struct{ Connections []ConnStatus }
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil || len(st.Connections) == 0 {
		return ConnStatus{}
	}
	return st.Connections[0]
}

// waitOneRuns waits until one of a and b runs the connection and the other
// stands by behind it, and returns them in that order.
func waitOneRuns(t *testing.T, a, b *harness) (runner, other *harness) {
	t.Helper()
	testutil.Eventually(t, 20*time.Second, func() bool {
		sa, sb := connStatus(a.info.HTTPAddr), connStatus(b.info.HTTPAddr)
		switch {
		case sa.State == StateConnected && sb.State == StateStandby && sb.LeaseHolder == sa.LeaseHolder:
			runner, other = a, b
		case sb.State == StateConnected && sa.State == StateStandby && sa.LeaseHolder == sb.LeaseHolder:
			runner, other = b, a
		default:
			return false
		}
		return true
	}, "one process runs the connection, the other stands by behind it")
	return runner, other
}

func runsHere(st State) bool {
	return st == StateConnecting || st == StateConnected || st == StateReconnecting
}

// Two processes started with the same config (same lease owner, as two
// bridges on one host) on one NATS: at every instant at most one runs the
// connection, and a burst of commands in one room reaches the platform in
// order. A restarted process of the same owner whose predecessor is gone
// takes the connection at once, well before the TTL.
func TestLeaseSameOwnerTwoProcesses(t *testing.T) {
	t.Parallel()
	srv := testutil.NATS(t)
	env := newBandEnv(t, bandemu.Options{})
	room := env.emu.AddRoom("ops", env.user.ID)
	spec := env.spec
	spec.config = "[lease]\nttl = \"3s\"\nowner = \"same-host\"\n" + spec.config
	spec.natsURL = srv.URL
	a := runBridge(t, spec)
	waitState(t, a, StateConnected)
	kv, err := srv.JS.KeyValue(testutil.Context(t, 10*time.Second), LeaseBucket("bridge"))
	if err != nil {
		t.Fatal(err)
	}
	b := runBridge(t, spec)

	// Watch both processes until the burst is done: never both running, and
	// the one running is the one the lease names.
	var mu sync.Mutex
	var violations []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	stopWatch := sync.OnceFunc(func() { close(stop); wg.Wait() })
	t.Cleanup(stopWatch)
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			sa, sb := connStatus(a.info.HTTPAddr), connStatus(b.info.HTTPAddr)
			running := 0
			var holder string
			for _, s := range []ConnStatus{sa, sb} {
				if runsHere(s.State) {
					running++
					holder = s.LeaseHolder
				}
			}
			e, gerr := kv.Get(context.Background(), "agent")
			mu.Lock()
			if running > 1 {
				violations = append(violations, fmt.Sprintf("both run the connection: a %s (%s), b %s (%s)", sa.State, sa.LeaseHolder, sb.State, sb.LeaseHolder))
			}
			if running == 1 && gerr == nil && parseHolder(e.Value()).String() != holder {
				// The lease may have moved between the two reads; only a
				// stable mismatch is a violation, so read /status again.
				if again := connStatus(a.info.HTTPAddr); runsHere(again.State) && again.LeaseHolder == holder {
					violations = append(violations, fmt.Sprintf("a runs as %s but the lease names %s", holder, e.Value()))
				}
			}
			mu.Unlock()
		}
	})
	runner, other := waitOneRuns(t, a, b)
	if n := env.emu.Connections(); n != 1 {
		t.Errorf("%d platform sockets, want 1", n)
	}
	const n = 300
	for i := range n {
		publishCmd(t, a, room.ID, "send_message", fmt.Sprintf("c-%d", i), map[string]any{
			"content": fmt.Sprintf("reply %d", i), "mentions": []map[string]any{{"id": env.user.ID}}})
	}
	testutil.Eventually(t, 60*time.Second, func() bool { return len(env.emu.AgentMessages(room.ID)) >= n }, "all commands executed")
	stopWatch()
	for _, v := range violations[:min(len(violations), 5)] {
		t.Error(v)
	}
	got := env.emu.AgentMessages(room.ID)
	if len(got) != n {
		t.Errorf("%d messages on the platform, want %d", len(got), n)
	}
	inversions := 0
	for i, m := range got {
		if !strings.HasSuffix(m.Content, fmt.Sprintf("reply %d", i)) {
			inversions++
		}
	}
	if inversions > 0 {
		t.Errorf("%d of %d commands out of order", inversions, n)
	}
	if st := connStatus(other.info.HTTPAddr); st.State != StateStandby || st.LeaseHolder != connStatus(runner.info.HTTPAddr).LeaseHolder {
		t.Errorf("standby: %s, holder %q; want standby behind the runner", st.State, st.LeaseHolder)
	}
	b.stop()
	a.stop()

	// A process of this owner was killed: its key names an instance that no
	// longer answers. The restarted process takes over at once, not after
	// the TTL (30s here).
	ctx := testutil.Context(t, 10*time.Second)
	kv30, err := srv.JS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: LeaseBucket("bridge"), TTL: 30 * time.Second, History: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv30.Put(ctx, "agent", []byte(`{"owner":"same-host","instance":"killedProcess0000000000"}`)); err != nil {
		t.Fatal(err)
	}
	spec.config = strings.Replace(spec.config, `ttl = "3s"`, `ttl = "30s"`, 1)
	start := time.Now()
	c := runBridge(t, spec)
	testutil.Eventually(t, 10*time.Second, func() bool { return connStatus(c.info.HTTPAddr).State == StateConnected }, "restarted process took over before the TTL")
	t.Logf("took over after %s (ttl 30s)", time.Since(start))

	// A key of another owner is not taken over before it expires, gone
	// or not.
	c.stop()
	if _, err := kv30.Put(ctx, "agent", []byte(`{"owner":"other-host","instance":"killedProcess0000000001"}`)); err != nil {
		t.Fatal(err)
	}
	d := runBridge(t, spec)
	waitState(t, d, StateStandby)
	if st := connStatus(d.info.HTTPAddr); st.LeaseHolder != "other-host/killedProcess0000000001" {
		t.Errorf("lease holder on /status %q", st.LeaseHolder)
	}
}

// One renewal loop keeps every lease of the process: held leases stay
// valid past several TTLs, and a lease whose key another process took is
// lost alone, its fence closed before its loss is told.
func TestLeasesRenewedByOneLoop(t *testing.T) {
	t.Parallel()
	const ttl = 600 * time.Millisecond
	ctx := testutil.Context(t, 30*time.Second)
	ls := openTestLeases(t, ctx, ttl)
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { ls.renew(rctx, testutil.Logger(t)); close(done) }()
	defer func() { cancel(); <-done }()

	var held []*lease
	lostCh := make(chan string, 8)
	var stops []func() error
	for _, name := range []string{"c1", "c2", "c3"} {
		l := ls.lease(name)
		if !l.try(ctx, func(holder) {}) {
			t.Fatalf("%s not taken", name)
		}
		held = append(held, l)
		stops = append(stops, l.keep(func(err error) {
			if l.fence() == nil {
				t.Errorf("%s: loss told while its fence still lets it act", name)
			}
			if !errors.Is(err, errLeaseLost) {
				t.Errorf("%s lost with %v, want errLeaseLost", name, err)
			}
			lostCh <- name
		}))
	}
	first := held[0].revision()
	testutil.Eventually(t, 10*time.Second, func() bool { return held[0].revision() >= first+4 }, "c1 renewed four times")
	for _, l := range held {
		if err := l.fence(); err != nil {
			t.Fatalf("%s after %v: %v", l.key, 4*ttl/3, err)
		}
	}
	// Another process takes c2's key (an operator deleted it, say).
	if err := ls.kv.Delete(ctx, "c2"); err != nil {
		t.Fatal(err)
	}
	if _, err := ls.kv.Create(ctx, "c2", []byte(`{"owner":"b","instance":"x"}`)); err != nil {
		t.Fatal(err)
	}
	select {
	case name := <-lostCh:
		if name != "c2" {
			t.Fatalf("%s lost, want c2", name)
		}
	case <-ctx.Done():
		t.Fatal("c2's loss never told")
	}
	if err := stops[1](); !errors.Is(err, errLeaseLost) {
		t.Errorf("stop of c2: %v, want its loss", err)
	}
	for _, i := range []int{0, 2} {
		if err := stops[i](); err != nil {
			t.Errorf("stop of %s: %v, want nil", held[i].key, err)
		}
		if err := held[i].fence(); err != nil {
			t.Errorf("%s fenced: %v", held[i].key, err)
		}
	}
	select {
	case name := <-lostCh:
		t.Fatalf("%s lost too", name)
	default:
	}
}

// A renewal the server applied but whose answer was lost leaves a newer
// revision than the holder knows; its release still deletes the key, so a
// successor need not wait the key out.
func TestReleaseAfterALostRenewalAnswer(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 20*time.Second)
	ls := openTestLeases(t, ctx, time.Minute)
	l := ls.lease("c1")
	if !l.try(ctx, func(holder) {}) {
		t.Fatal("lease not taken")
	}
	// The renewal's write lands; its answer never reaches the holder.
	if _, err := ls.kv.Update(ctx, "c1", l.value, l.revision()); err != nil {
		t.Fatal(err)
	}
	l.release(ctx)
	if _, err := ls.kv.Get(ctx, "c1"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("lease key after release: %v, want it gone", err)
	}
}

// A lease not renewed (renewal rounds stalled, NATS away) is given up by
// its own timer at lease.ttl − lease.ttl/3 after its last renewal: fenced
// and told before its key can expire and another process take it.
func TestLeaseGivenUpBeforeItsKeyExpires(t *testing.T) {
	t.Parallel()
	const ttl = 3 * time.Second
	ctx := testutil.Context(t, 20*time.Second)
	ls := openTestLeases(t, ctx, ttl)
	l := ls.lease("c1")
	took := time.Now()
	if !l.try(ctx, func(holder) {}) {
		t.Fatal("lease not taken")
	}
	told := make(chan time.Time, 1)
	stop := l.keep(func(err error) {
		if !errors.Is(err, errLeaseLost) {
			t.Errorf("lost with %v, want errLeaseLost", err)
		}
		if l.fence() == nil {
			t.Error("loss told while the fence still lets it act")
		}
		told <- time.Now()
	})
	defer stop()
	// No renewal loop runs: nothing renews the lease.
	select {
	case at := <-told:
		if at.Sub(took) >= ttl {
			t.Fatalf("loss told %v after the take, not before the key could expire (%v)", at.Sub(took), ttl)
		}
	case <-ctx.Done():
		t.Fatal("a lease nobody renews was never given up")
	}
}

// Connections start under their leases at the start rate, and none while
// a renewal round runs late: each start competes with the renewals, and a
// start of thousands that starved them had leases given up and taken again
// in waves. Starts held while the renewals were late go at the rate once
// they caught up, not all at once.
func TestStartsPacedNotWhileRenewalsLate(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 20*time.Second)
	ls := openTestLeases(t, ctx, time.Minute)
	ls.starts = connector.NewDialLimiter(10, 1)

	ls.setLate(true)
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	err := ls.pace(short)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("pace while renewals run late: %v, want it to wait", err)
	}

	// 6 starts wait while the renewals are late; once they caught up the
	// starts take a token each at 10 a second: the last goes at least
	// 0.4 s after the first.
	ls.starts = connector.NewDialLimiter(10, 6) // the first tokens at once
	done := make(chan []time.Time, 1)
	go func() { done <- testutil.Finishes(t, 6, func() error { return ls.pace(ctx) }) }()
	testutil.Eventually(t, 10*time.Second, func() bool { return ls.held.Load() == 6 }, "6 starts held while the renewals run late")
	// A fresh bucket (one token, then 10 a second), whatever the first
	// refilled meanwhile; the starts read it after the renewals caught up.
	ls.starts = connector.NewDialLimiter(10, 1)
	caughtUp := time.Now()
	ls.setLate(false)
	at := <-done
	if len(at) > 0 && at[0].Before(caughtUp) {
		t.Fatalf("a start went while the renewals ran late")
	}
	if len(at) == 6 {
		if span := at[5].Sub(at[0]); span < 400*time.Millisecond {
			t.Fatalf("6 starts held while renewals ran late went within %v once they caught up, want the 10 a second pace", span)
		}
	}
}

// openTestLeases opens the leases of a process "a" with the given TTL on a
// NATS server of the test's own; closed at cleanup.
func openTestLeases(t *testing.T, ctx context.Context, ttl time.Duration) *leases {
	t.Helper()
	srv := testutil.NATS(t)
	ls, err := openLeases(ctx, srv.JS, srv.NC, "bridge", "a", ttl, 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ls.close)
	return ls
}
