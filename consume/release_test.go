package consume

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bridgeworks/bridge/ackflow"
	"github.com/bridgeworks/bridge/internal/testutil"
)

// memCursor is a Cursor in memory; refuse makes Save fail (a lost lease).
type memCursor struct {
	mu     sync.Mutex
	seq    uint64
	found  bool
	saves  int
	tries  atomic.Int32
	refuse atomic.Bool
}

func (c *memCursor) Load(context.Context) (uint64, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seq, c.found, nil
}

func (c *memCursor) Save(_ context.Context, seq uint64) error {
	c.tries.Add(1)
	if c.refuse.Load() {
		return errors.New("lease lost")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq, c.found = seq, true
	c.saves++
	return nil
}

func (c *memCursor) get() (uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seq, c.found
}

// countingStream counts the message gets of the released engine's check.
type countingStream struct {
	jetstream.Stream
	gets atomic.Int32
}

func (s *countingStream) GetMsg(ctx context.Context, seq uint64, opts ...jetstream.GetMsgOpt) (*jetstream.RawStreamMsg, error) {
	s.gets.Add(1)
	return s.Stream.GetMsg(ctx, seq, opts...)
}

// seqCounter acks every message and counts how often each stream
// sequence was handled.
type seqCounter struct {
	mu sync.Mutex
	n  map[uint64]int
}

func (c *seqCounter) handle(_, _ context.Context, m *Msg) (ackflow.Decision, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[uint64]int{}
	}
	c.n[m.Seq]++
	return ackflow.Decision{Action: ackflow.ActionAck}, true
}

// distinct is how many sequences were handled.
func (c *seqCounter) distinct() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.n)
}

// once fails t for every sequence handled more than once.
func (c *seqCounter) once(t *testing.T) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	for seq, n := range c.n {
		if n != 1 {
			t.Errorf("seq %d handled %d times", seq, n)
		}
	}
}

func consumerExists(t *testing.T, js jetstream.JetStream) bool {
	t.Helper()
	_, err := js.Consumer(testutil.Context(t, 5*time.Second), "S", "C")
	if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		t.Fatal(err)
	}
	return err == nil
}

func releaseOptions(t *testing.T, js jetstream.JetStream, o Options, cur Cursor) (Options, *countingStream) {
	t.Helper()
	st, err := js.Stream(testutil.Context(t, 5*time.Second), "S")
	if err != nil {
		t.Fatal(err)
	}
	cs := &countingStream{Stream: st}
	o.Doorbell, o.Mux, o.IdleWake = []string{"t.>"}, runMux(t), time.Hour
	o.Release = &Release{After: 300 * time.Millisecond, Stream: cs, Cursor: cur}
	return o, cs
}

// TestIdleConsumerReleasedAndTakenBack: an engine idle for Release.After
// deletes its consumer after saving where it was; a message published
// later rings it, the consumer comes back starting after the cursor, and
// the message is handled once; then it is released again.
func TestIdleConsumerReleasedAndTakenBack(t *testing.T) {
	ns := testutil.NATS(t)
	stream(t, ns.JS, 2, 3)
	cur := &memCursor{}
	o, _ := releaseOptions(t, ns.JS, baseOptions(ns.JS, ns.NC), cur)
	var c seqCounter
	runEngine(t, o, c.handle)
	released := func(want uint64) func() bool {
		return func() bool {
			seq, found := cur.get()
			return found && seq == want && !consumerExists(t, ns.JS) && fetchLoops() == 0
		}
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return c.distinct() == 6 }, "stored messages handled: %d of 6", c.distinct())
	testutil.Eventually(t, 10*time.Second, released(6), "idle consumer not released at 6 (cursor %v)", cur)

	ctx := testutil.Context(t, 10*time.Second)
	if _, err := ns.JS.Publish(ctx, "t.r1", []byte("r1:late")); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return c.distinct() == 7 }, "message published while released not handled")
	testutil.Eventually(t, 10*time.Second, released(7), "consumer not released again at 7")
	c.once(t)
}

// TestReleasedStartCreatesNoConsumer: an engine that starts with a saved
// cursor and nothing stored after it creates no consumer; messages
// published while it was stopped, and after, are handled, and none from
// before the cursor.
func TestReleasedStartCreatesNoConsumer(t *testing.T) {
	ns := testutil.NATS(t)
	stream(t, ns.JS, 1, 4)
	cur := &memCursor{seq: 4, found: true}
	o, cs := releaseOptions(t, ns.JS, baseOptions(ns.JS, ns.NC), cur)
	var handled atomic.Int32
	var old atomic.Int32
	h := func(stop, hard context.Context, m *Msg) (ackflow.Decision, bool) {
		if m.Seq <= 4 {
			old.Add(1)
		}
		handled.Add(1)
		return ackflow.Decision{Action: ackflow.ActionAck}, true
	}
	ctx, cancel := context.WithCancel(context.Background())
	en, err := Start(ctx, o, h)
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return cs.gets.Load() >= 1 && fetchLoops() == 0 }, "released engine never checked the stream")
	if consumerExists(t, ns.JS) {
		t.Error("an engine started released with nothing to do created its consumer")
	}
	cancel()
	en.Drain()

	pctx := testutil.Context(t, 10*time.Second)
	if _, err := ns.JS.Publish(pctx, "t.r0", []byte("while stopped")); err != nil {
		t.Fatal(err)
	}
	runEngine(t, o, h)
	testutil.Eventually(t, 10*time.Second, func() bool { return handled.Load() == 1 }, "message stored while stopped not handled")
	if _, err := ns.JS.Publish(pctx, "t.r0", []byte("after")); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return handled.Load() == 2 }, "message published after start not handled")
	if old.Load() != 0 {
		t.Errorf("%d messages from before the cursor handled again", old.Load())
	}
}

// TestReleaseKeepsConsumerWhenCursorRefused: a cursor that cannot be saved
// (the lease is gone) keeps the consumer; nothing is lost.
func TestReleaseKeepsConsumerWhenCursorRefused(t *testing.T) {
	ns := testutil.NATS(t)
	stream(t, ns.JS, 1, 2)
	cur := &memCursor{}
	cur.refuse.Store(true)
	o, _ := releaseOptions(t, ns.JS, baseOptions(ns.JS, ns.NC), cur)
	var handled atomic.Int32
	runEngine(t, o, func(stop, hard context.Context, m *Msg) (ackflow.Decision, bool) {
		handled.Add(1)
		return ackflow.Decision{Action: ackflow.ActionAck}, true
	})
	testutil.Eventually(t, 10*time.Second, func() bool { return handled.Load() == 2 }, "stored messages not handled")
	// Two release checks come and go; the consumer stays.
	testutil.Eventually(t, 10*time.Second, func() bool { return cur.tries.Load() >= 2 && fetchLoops() == 0 }, "no release tried (%d)", cur.tries.Load())
	if !consumerExists(t, ns.JS) {
		t.Fatal("consumer deleted although its cursor was not saved")
	}
	if _, err := ns.JS.Publish(testutil.Context(t, 5*time.Second), "t.r0", []byte("more")); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return handled.Load() == 3 }, "message after a refused release not handled")
}

// TestReleasedEngineTakesExistingConsumer: a consumer that exists although
// a cursor was saved (a crash between the save and the delete, then more
// work) is taken as it is: its unacknowledged messages come back.
func TestReleasedEngineTakesExistingConsumer(t *testing.T) {
	ns := testutil.NATS(t)
	stream(t, ns.JS, 1, 3)
	ctx := testutil.Context(t, 10*time.Second)
	// A predecessor took all three and acked only the first.
	c, err := ns.JS.CreateConsumer(ctx, "S", jetstream.ConsumerConfig{Durable: "C", AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := c.Fetch(3, jetstream.FetchMaxWait(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	first := true
	for m := range batch.Messages() {
		if first {
			_ = m.DoubleAck(ctx)
			first = false
		}
	}
	cur := &memCursor{seq: 1, found: true}
	o, _ := releaseOptions(t, ns.JS, baseOptions(ns.JS, ns.NC), cur)
	var handled atomic.Int32
	runEngine(t, o, func(stop, hard context.Context, m *Msg) (ackflow.Decision, bool) {
		if m.Seq == 1 {
			t.Error("acked message handled again")
		}
		handled.Add(1)
		return ackflow.Decision{Action: ackflow.ActionAck}, true
	})
	testutil.Eventually(t, 15*time.Second, func() bool { return handled.Load() == 2 }, "unacknowledged messages of the existing consumer: %d of 2", handled.Load())
	testutil.Eventually(t, 10*time.Second, func() bool { seq, _ := cur.get(); return seq == 3 && !consumerExists(t, ns.JS) },
		"consumer not released after its messages")
}

// TestDoorbellTakesReleasedConsumerBack: a ring of the doorbell takes a
// released consumer back at once, without asking the stream first: the
// message that rang may not be stored yet when the ring arrives. Here the
// doorbell rings on a subject of its own before the message is published,
// so a check of the stream would find nothing.
func TestDoorbellTakesReleasedConsumerBack(t *testing.T) {
	ns := testutil.NATS(t)
	stream(t, ns.JS, 1, 1)
	cur := &memCursor{seq: 1, found: true}
	o, cs := releaseOptions(t, ns.JS, baseOptions(ns.JS, ns.NC), cur)
	o.Doorbell = []string{"ring"}
	o.FetchWait = 5 * time.Second
	var handled atomic.Int32
	runEngine(t, o, func(stop, hard context.Context, m *Msg) (ackflow.Decision, bool) {
		handled.Add(1)
		return ackflow.Decision{Action: ackflow.ActionAck}, true
	})
	testutil.Eventually(t, 10*time.Second, func() bool { return cs.gets.Load() >= 1 && fetchLoops() == 0 }, "released engine never checked the stream")
	if err := ns.NC.Publish("ring", nil); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return consumerExists(t, ns.JS) }, "a doorbell ring did not take the consumer back")
	if _, err := ns.JS.Publish(testutil.Context(t, 5*time.Second), "t.r0", []byte("r0:late")); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return handled.Load() == 1 }, "message stored after its ring not handled")
}

// lostDeleteJS deletes consumers but answers the first delete with an
// error, as when the answer is lost on the way.
type lostDeleteJS struct {
	jetstream.JetStream
	lost atomic.Bool
}

func (j *lostDeleteJS) DeleteConsumer(ctx context.Context, stream, name string) error {
	err := j.JetStream.DeleteConsumer(ctx, stream, name)
	if err == nil && j.lost.CompareAndSwap(false, true) {
		return context.DeadlineExceeded
	}
	return err
}

// TestLostDeleteAnswerRunsNothingTwice: a delete that took effect though
// its answer was lost leaves the engine released after the saved cursor;
// the next message is handled, and none before it again.
func TestLostDeleteAnswerRunsNothingTwice(t *testing.T) {
	ns := testutil.NATS(t)
	stream(t, ns.JS, 1, 3)
	js := &lostDeleteJS{JetStream: ns.JS}
	cur := &memCursor{}
	o, _ := releaseOptions(t, ns.JS, baseOptions(js, ns.NC), cur)
	var c seqCounter
	runEngine(t, o, c.handle)
	testutil.Eventually(t, 10*time.Second, func() bool { return js.lost.Load() && !consumerExists(t, ns.JS) }, "no release")
	if _, err := ns.JS.Publish(testutil.Context(t, 5*time.Second), "t.r0", []byte("r0:late")); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return c.distinct() == 4 }, "message after the lost delete not handled")
	c.once(t)
}

// TestConsumerLostWhileHeldResumesAfterSettled: a consumer deleted by
// someone else while the engine holds it is created again after the last
// message settled, not from the saved cursor or the start of the stream.
func TestConsumerLostWhileHeldResumesAfterSettled(t *testing.T) {
	ns := testutil.NATS(t)
	stream(t, ns.JS, 1, 3)
	cur := &memCursor{}
	o, _ := releaseOptions(t, ns.JS, baseOptions(ns.JS, ns.NC), cur)
	o.Release.After = time.Hour
	var c seqCounter
	runEngine(t, o, c.handle)
	testutil.Eventually(t, 10*time.Second, func() bool { return c.distinct() == 3 && fetchLoops() == 0 }, "stored messages not handled")
	if err := ns.JS.DeleteConsumer(testutil.Context(t, 5*time.Second), "S", "C"); err != nil {
		t.Fatal(err)
	}
	if _, err := ns.JS.Publish(testutil.Context(t, 5*time.Second), "t.r0", []byte("r0:late")); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 15*time.Second, func() bool { return c.distinct() == 4 }, "message after the loss not handled")
	c.once(t)
}
