package cmdexec_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bridgeworks/bridge/cmdexec"
	"github.com/bridgeworks/bridge/internal/testutil"
	"github.com/bridgeworks/bridge/subjects"
)

// 20 rooms × 50 commands, published interleaved: each room runs strictly in
// publish order, rooms overlap, and never more than MaxParallelRooms run.
func TestPerRoomOrderAndParallelism(t *testing.T) {
	t.Parallel()
	const rooms, perRoom, parallel = 20, 50, 4
	e := newEnv(t, 0)
	fx := newFake()
	fx.delay = time.Millisecond
	reg := prometheus.NewRegistry()
	o := e.options(fx)
	o.MaxParallelRooms = parallel
	o.Metrics = testMetrics(t, reg)
	e.start(o)

	for i := range perRoom {
		for r := range rooms {
			// Room ids with unsafe bytes exercise the token escaping.
			e.publish(cmdSubject(fmt.Sprintf("room.%02d", r), "send_message"), mustJSON(map[string]int{"seq": i}),
				subjects.HeaderMsgID, fmt.Sprintf("r%d-%d", r, i))
		}
	}
	testutil.Eventually(t, 60*time.Second, func() bool { return e.res.distinct(t) == rooms*perRoom }, "results for %d of %d commands", e.res.distinct(t), rooms*perRoom)

	next := map[string]int{}
	for _, c := range fx.snapshot() {
		if c.n != 1 {
			t.Fatalf("%s executed %d times", c.cmd.ID, c.n)
		}
		if c.seq != next[c.cmd.Room] {
			t.Fatalf("room %q: got seq %d, want %d", c.cmd.Room, c.seq, next[c.cmd.Room])
		}
		next[c.cmd.Room]++
	}
	for room, n := range next {
		if n != perRoom {
			t.Fatalf("room %q: %d commands executed", room, n)
		}
	}
	if len(next) != rooms {
		t.Fatalf("saw %d rooms", len(next))
	}
	fx.mu.Lock()
	maxRooms := fx.maxRooms
	fx.mu.Unlock()
	if maxRooms < 2 || maxRooms > parallel {
		t.Fatalf("at most %d rooms ran at once; want 2..%d", maxRooms, parallel)
	}
	for _, r := range e.res.results(t) {
		if !r.OK || r.Status != 200 || r.Attempts != 1 {
			t.Fatalf("result %+v", r)
		}
	}
	// Results are at least once (a redelivery is answered again from the
	// store); executions are exactly once (checked above).
	if got := counterSum(t, reg, "bridge_commands_total", "outcome", "ok"); got != rooms*perRoom {
		t.Errorf("bridge_commands_total{outcome=ok} = %v", got)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return e.consumerInfo().NumAckPending == 0 }, "messages left unacked")
}

// counterSum adds the values of metric's series whose label has value.
func counterSum(t *testing.T, reg *prometheus.Registry, metric, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != metric {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					sum += m.GetCounter().GetValue()
				}
			}
		}
	}
	return sum
}

// testMetrics are command metrics registered on reg.
func testMetrics(t *testing.T, reg *prometheus.Registry) *cmdexec.Metrics {
	t.Helper()
	m, err := cmdexec.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestMetricsSharedByExecutors: the executors of a process share one set
// of collectors: building more executors registers nothing new, each
// connection gets its own series (with its connection and platform labels,
// the in-flight gauge from the start), and Forget removes one
// connection's series only.
func TestMetricsSharedByExecutors(t *testing.T) {
	t.Parallel()
	s := testutil.NATS(t)
	reg := prometheus.NewRegistry()
	m := testMetrics(t, reg)
	described := func() int {
		ch := make(chan *prometheus.Desc, 64)
		reg.Describe(ch)
		close(ch)
		return len(ch)
	}
	before := described()
	for _, conn := range []string{"c1", "c2", "c3"} {
		if _, err := cmdexec.New(cmdexec.Options{JS: s.JS, NC: s.NC, Platform: "band", Conn: conn, Exec: newFake(), Metrics: m}); err != nil {
			t.Fatal(err)
		}
	}
	if n := described(); n != before {
		t.Errorf("descriptions registered: %d after three executors, %d before", n, before)
	}
	inFlight := func() map[string]string {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, mf := range mfs {
			if mf.GetName() != "bridge_commands_in_flight" {
				continue
			}
			for _, mt := range mf.GetMetric() {
				l := map[string]string{}
				for _, lp := range mt.GetLabel() {
					l[lp.GetName()] = lp.GetValue()
				}
				got[l["connection"]] = l["platform"]
			}
		}
		return got
	}
	if got := inFlight(); len(got) != 3 || got["c1"] != "band" || got["c3"] != "band" {
		t.Errorf("bridge_commands_in_flight series: %v, want c1, c2, c3 on band", got)
	}
	m.Forget("c2")
	if got := inFlight(); len(got) != 2 || got["c2"] != "" {
		t.Errorf("after Forget(c2): %v, want c1 and c3", got)
	}
}
