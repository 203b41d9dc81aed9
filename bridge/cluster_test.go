package bridge

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/internal/testutil"
)

// The assignment gives every member ceil(n/m) or one less, and a member
// leaving moves only the connections it had.
func TestAssignSpreadsAndMovesOnlyTheLeaversShare(t *testing.T) {
	t.Parallel()
	var conns []string
	for i := range 60 {
		conns = append(conns, fmt.Sprintf("agent-%02d", i))
	}
	three := []string{"m1", "m2", "m3"}
	a := assign(conns, three)
	load := map[string]int{}
	for _, m := range a {
		load[m]++
	}
	for _, m := range three {
		if load[m] != 20 {
			t.Errorf("%s holds %d, want 20 (%v)", m, load[m], load)
		}
	}
	// The bound makes a few more move than the leaver's 20 (a connection
	// whose first choice is full takes its next), not a reshuffle.
	b := assign(conns, []string{"m1", "m2"})
	moved := 0
	for _, c := range conns {
		if a[c] != "m3" && b[c] != a[c] {
			moved++
		}
	}
	if moved > 3 {
		t.Errorf("%d connections of the staying members moved, want at most 3", moved)
	}
	t.Logf("m3 leaving moved its 20 and %d others", moved)
}

// clusterStatus is the part of /status this test reads.
type clusterStatus struct {
	Connections []ConnStatus
	Cluster     struct {
		Self    string
		Members []ClusterMember
		Leases  []ClusterLease
	}
}

func readStatus(addr string) (clusterStatus, error) {
	var st clusterStatus
	resp, err := http.Get("http://" + addr + "/status")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// runningHere counts the connections h runs under its own lease.
func runningHere(h *harness) int {
	st, err := readStatus(h.info.HTTPAddr)
	if err != nil {
		return -1
	}
	n := 0
	for _, c := range st.Connections {
		if c.State == StateConnected && c.LeaseHolder == st.Cluster.Self && c.LeaseRevision > 0 {
			n++
		}
	}
	return n
}

// Three replicas of one config with 60 connections on one NATS share them
// 20 each; one stopping hands its share to the other two at once; back, it
// takes its share again, handed over one connection at a time.
func TestReplicasSpreadConnections(t *testing.T) {
	t.Parallel()
	srv := testutil.NATS(t)
	reg := connector.Registry{"fake": {Platform: "fake", New: func(connector.Config, connector.Deps) (connector.Connector, error) {
		return newScripted(), nil
	}}}
	var cfg strings.Builder
	cfg.WriteString("[lease]\nttl = \"2s\"\n")
	const n = 60
	for i := range n {
		fmt.Fprintf(&cfg, "[[connection]]\nname = \"agent-%02d\"\nplatform = \"fake\"\n", i)
	}
	spec := func(owner string) bridgeSpec {
		return bridgeSpec{config: strings.Replace(cfg.String(), "[lease]\n", fmt.Sprintf("[lease]\nowner = %q\n", owner), 1),
			registry: reg, natsURL: srv.URL}
	}
	spread := func(hs ...*harness) (counts []int, ok bool) {
		want := n / len(hs)
		ok = true
		total := 0
		for _, h := range hs {
			c := runningHere(h)
			counts = append(counts, c)
			total += c
			if c < want-2 || c > want+2 {
				ok = false
			}
		}
		return counts, ok && total == n
	}
	waitSpread := func(what string, hs ...*harness) time.Duration {
		t.Helper()
		start := time.Now()
		testutil.Eventually(t, 60*time.Second, func() bool { _, ok := spread(hs...); return ok }, "%s", what)
		took := time.Since(start)
		counts, _ := spread(hs...)
		t.Logf("%s: %v after %s", what, counts, took.Round(time.Millisecond))
		return took
	}

	a := runBridge(t, spec("a"))
	waitSpread("one replica holds all", a)
	b := runBridge(t, spec("b"))
	c := runBridge(t, spec("c"))
	waitSpread("three replicas share", a, b, c)

	c.stop()
	waitSpread("c stopped: a and b share", a, b)

	c2 := runBridge(t, spec("c"))
	waitSpread("c back: three share again", a, b, c2)

	st, err := readStatus(a.info.HTTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Cluster.Members) != 3 || len(st.Cluster.Leases) != n {
		t.Fatalf("a's cluster view: %d members, %d leases", len(st.Cluster.Members), len(st.Cluster.Leases))
	}
	for _, l := range st.Cluster.Leases {
		if l.Holder == "" || l.Revision == 0 || l.Since.IsZero() {
			t.Errorf("lease %+v: holder, revision or since missing", l)
		}
	}
	var names []string
	for i := range n {
		names = append(names, fmt.Sprintf("agent-%02d", i))
	}
	members, leases, err := ReadCluster(testutil.Context(t, 10*time.Second), srv.JS, "bridge", names)
	if err != nil {
		t.Fatal(err)
	}
	holds := 0
	for _, m := range members {
		holds += m.Holds
	}
	if len(members) != 3 || len(leases) != n || holds != n {
		t.Errorf("bridge status view: %d members holding %d, %d leases", len(members), holds, len(leases))
	}
}

// A holder cut off from NATS (its renewals stop) refuses to act for the
// connection before another process can take the lease: its fence fails
// before the key expires and the other's take succeeds.
func TestLeaseFenceEndsBeforeTakeover(t *testing.T) {
	t.Parallel()
	srv := testutil.NATS(t)
	ctx := testutil.Context(t, 30*time.Second)
	const ttl = time.Second
	la, err := openLeases(ctx, srv.JS, srv.NC, "bridge", "a", ttl, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer la.close()
	lb, err := openLeases(ctx, srv.JS, srv.NC, "bridge", "b", ttl, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer lb.close()
	old, next := la.lease("c"), lb.lease("c")
	if !old.try(ctx, func(holder) {}) {
		t.Fatal("a did not take the free lease")
	}
	if err := old.fence(); err != nil {
		t.Fatalf("fence of a fresh lease: %v", err)
	}
	// a renews no more (cut off). Watch its fence while b waits the key out.
	fenced := make(chan time.Time, 1)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer func() { close(stop); wg.Wait() }()
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if old.fence() != nil {
				fenced <- time.Now()
				return
			}
			time.Sleep(time.Millisecond)
		}
	})
	if err := next.acquire(ctx, nil, nil, func(string) {}); err != nil {
		t.Fatal(err)
	}
	took := time.Now()
	select {
	case at := <-fenced:
		if !at.Before(took) {
			t.Fatalf("a's fence failed at %s, after b took the lease at %s", at, took)
		}
		t.Logf("a stopped acting %s before b took over", took.Sub(at).Round(time.Millisecond))
	default:
		t.Fatal("b took the lease while a's fence still let it act")
	}
	if !errors.Is(old.fence(), errFenced) || next.fence() != nil {
		t.Fatalf("after takeover: a %v, b %v", old.fence(), next.fence())
	}
}
