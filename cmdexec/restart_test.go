package cmdexec_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bridgeworks/bridge/cmdexec"
	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/internal/testutil"
	"github.com/bridgeworks/bridge/subjects"
)

// Stopping an executor in the middle of a stream and starting a new one
// loses nothing and repeats nothing, and each room stays in order across
// the restart, also for commands published after it.
func TestRestartMidStream(t *testing.T) {
	t.Parallel()
	const rooms, before, after = 5, 40, 10
	e := newEnv(t, 0)
	fx := newFake()
	fx.delay = 3 * time.Millisecond
	o := e.options(fx)
	o.MaxParallelRooms = 2
	_, stop := e.start(o)
	for i := range before {
		for r := range rooms {
			e.publish(cmdSubject(fmt.Sprintf("room%d", r), "send_message"), mustJSON(map[string]int{"seq": i}),
				subjects.HeaderMsgID, fmt.Sprintf("r%d-%d", r, i))
		}
	}
	testutil.Eventually(t, 20*time.Second, func() bool { return len(fx.snapshot()) >= 30 }, "first executor did not start")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	done := len(fx.snapshot())
	if done >= rooms*before {
		t.Fatalf("first executor finished everything (%d); the test needs a stop mid-stream", done)
	}

	e.start(o)
	for i := before; i < before+after; i++ {
		for r := range rooms {
			e.publish(cmdSubject(fmt.Sprintf("room%d", r), "send_message"), mustJSON(map[string]int{"seq": i}),
				subjects.HeaderMsgID, fmt.Sprintf("r%d-%d", r, i))
		}
	}
	total := rooms * (before + after)
	testutil.Eventually(t, 30*time.Second, func() bool { return e.res.distinct(t) == total }, "results for %d of %d commands", e.res.distinct(t), total)
	next := map[string]int{}
	for _, c := range fx.snapshot() {
		if c.n != 1 {
			t.Fatalf("%s executed %d times", c.cmd.ID, c.n)
		}
		if c.seq != next[c.cmd.Room] {
			t.Fatalf("room %s: seq %d ran when %d was due", c.cmd.Room, c.seq, next[c.cmd.Room])
		}
		next[c.cmd.Room]++
	}
	for r := range rooms {
		if n := next[fmt.Sprintf("room%d", r)]; n != before+after {
			t.Fatalf("room%d: %d commands executed", r, n)
		}
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return e.consumerInfo().NumAckPending == 0 }, "messages left unacked")
}

// A command still running at the drain deadline is cancelled and handed
// back; the next executor runs it before the room's later commands.
func TestDrainDeadlineHandsBack(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0)
	started := make(chan struct{}, 1)
	slow := newFake()
	slow.script = func(ctx context.Context, c call) (connector.Response, error) {
		if c.cmd.ID == "stuck" {
			started <- struct{}{}
			<-ctx.Done() // a call that only ends when cancelled
			return connector.Response{}, ctx.Err()
		}
		return connector.Response{Status: 200}, nil
	}
	o := e.options(slow)
	o.DrainTimeout = 200 * time.Millisecond
	_, stop := e.start(o)
	e.publish(cmdSubject("r", "send_message"), `{}`, subjects.HeaderMsgID, "stuck")
	e.publish(cmdSubject("r", "send_message"), `{}`, subjects.HeaderMsgID, "later")
	<-started
	t0 := time.Now()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d > 10*time.Second {
		t.Fatalf("Run took %s to stop", d)
	}
	if slow.count("later") != 0 || e.res.len() != 0 {
		t.Fatal("later ran or a result was published for a cancelled command")
	}

	fx := newFake()
	o.Exec = fx
	e.start(o)
	e.res.byID(t, "later")
	calls := fx.snapshot()
	if len(calls) != 2 || calls[0].cmd.ID != "stuck" || calls[1].cmd.ID != "later" {
		t.Fatalf("second executor ran %v", ids(calls))
	}
}

func ids(cs []call) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.cmd.ID
	}
	return out
}

// A predecessor that crashed with commands in hand (no hand-back): the new
// executor holds newer commands until those come back after AckWait, so the
// room's order holds.
func TestCrashedPredecessorKeepsOrder(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0)
	cons, err := e.s.JS.CreateOrUpdateConsumer(e.ctx, "BRIDGE_COMMANDS", jetstream.ConsumerConfig{
		Durable: cmdexec.ConsumerName("c1"), FilterSubject: "bridge.cmd.band.c1.>",
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.publish(cmdSubject("a", "send_message"), `{}`, subjects.HeaderMsgID, "a1")
	e.publish(cmdSubject("a", "send_message"), `{}`, subjects.HeaderMsgID, "a2")
	batch, err := cons.Fetch(2, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for range batch.Messages() { // taken, never settled: the "crash"
	}
	e.publish(cmdSubject("a", "send_message"), `{}`, subjects.HeaderMsgID, "a3")
	e.publish(cmdSubject("b", "send_message"), `{}`, subjects.HeaderMsgID, "b1")

	fx := newFake()
	o := e.options(fx)
	o.AckWait = time.Second
	e.start(o)
	e.res.byID(t, "a3")
	e.res.byID(t, "b1")
	var order []string
	for _, c := range fx.snapshot() {
		if c.cmd.Room == "a" {
			order = append(order, c.cmd.ID)
		}
	}
	if fmt.Sprint(order) != "[a1 a2 a3]" {
		t.Fatalf("room a ran %v", order)
	}
}
