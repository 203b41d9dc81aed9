package cmdexec_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

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
	o.Registerer = reg
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
