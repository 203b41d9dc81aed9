package consume

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bridgeworks/bridge/ackflow"
	"github.com/bridgeworks/bridge/internal/testutil"
)

// stream makes stream S on t.> and publishes msgs messages to each of
// rooms rooms, interleaved, with "<room>:<i>" as body.
func stream(t *testing.T, js jetstream.JetStream, rooms, msgs int) {
	t.Helper()
	ctx := testutil.Context(t, 30*time.Second)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"t.>"}, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	for i := range msgs {
		for r := range rooms {
			if _, err := js.PublishAsync(fmt.Sprintf("t.r%d", r), fmt.Appendf(nil, "r%d:%d", r, i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		t.Fatal("publishes not acknowledged")
	}
}

func roomOf(subject string) string { return strings.TrimPrefix(subject, "t.") }

// recorder checks per-room order and concurrency bounds. With loose set
// (more than one message of a room in hand at once) it checks that each
// message starts once: the engine hands them out in order, but handlers
// running side by side may record their starts in either order.
type recorder struct {
	loose    bool
	seen     map[string]bool
	mu       sync.Mutex
	next     map[string]int // next expected index per room
	inRoom   map[string]int
	running  int
	maxAll   int
	maxRoom  int
	done     int
	problems []string
}

func newRecorder() *recorder {
	return &recorder{next: map[string]int{}, inRoom: map[string]int{}, seen: map[string]bool{}}
}

func (r *recorder) start(m *Msg) (room string, i int) {
	_, _ = fmt.Sscanf(strings.Replace(string(m.JS.Data()), ":", " ", 1), "%s %d", &room, &i)
	r.mu.Lock()
	defer r.mu.Unlock()
	switch key := fmt.Sprint(room, ":", i); {
	case r.loose && r.seen[key]:
		r.problems = append(r.problems, fmt.Sprintf("room %s started %d twice", room, i))
	case !r.loose && i != r.next[room]:
		r.problems = append(r.problems, fmt.Sprintf("room %s started %d, want %d", room, i, r.next[room]))
	default:
		r.seen[key] = true
	}
	r.next[room] = i + 1
	r.running++
	r.inRoom[room]++
	r.maxAll = max(r.maxAll, r.running)
	r.maxRoom = max(r.maxRoom, r.inRoom[room])
	return room, i
}

func (r *recorder) end(room string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.running--
	r.inRoom[room]--
	r.done++
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.done
}

func baseOptions(js jetstream.JetStream, nc *nats.Conn) Options {
	return Options{JS: js, NC: nc, Stream: "S", Consumer: jetstream.ConsumerConfig{Durable: "C"}, RoomOf: roomOf,
		AckWait: time.Second, FetchWait: 200 * time.Millisecond, DrainTimeout: 2 * time.Second}
}

// TestRoomOrderAndBounds: every room's messages start in stream order,
// rooms run in parallel up to MaxParallel, and one room never has more
// than MaxInFlightPerRoom in hand.
func TestRoomOrderAndBounds(t *testing.T) {
	t.Parallel()
	for _, perRoom := range []int{1, 3} {
		t.Run(fmt.Sprint("per_room_", perRoom), func(t *testing.T) {
			t.Parallel()
			ns := testutil.NATS(t)
			const rooms, msgs = 12, 25
			stream(t, ns.JS, rooms, msgs)
			rec := newRecorder()
			rec.loose = perRoom > 1
			o := baseOptions(ns.JS, ns.NC)
			o.MaxParallel, o.MaxInFlightPerRoom = 5, perRoom
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() {
				done <- Run(ctx, o, func(stop, hard context.Context, m *Msg) (ackflow.Decision, bool) {
					room, _ := rec.start(m)
					time.Sleep(time.Millisecond) // a call's latency, so handlers overlap
					rec.end(room)
					return ackflow.Decision{Action: ackflow.ActionAck}, true
				})
			}()
			testutil.Eventually(t, 30*time.Second, func() bool { return rec.count() == rooms*msgs }, "handled %d of %d", rec.count(), rooms*msgs)
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if len(rec.problems) > 0 {
				t.Fatalf("order broken: %v", rec.problems[:min(5, len(rec.problems))])
			}
			if rec.maxAll > 5 || rec.maxRoom > perRoom {
				t.Fatalf("in hand at once: %d in all (max 5), %d in one room (max %d)", rec.maxAll, rec.maxRoom, perRoom)
			}
			if perRoom > 1 && rec.maxRoom < 2 {
				t.Logf("a room never had two in hand (allowed, but the bound was not exercised)")
			}
		})
	}
}

// TestCrashKeepsOrder: a run dies (its connection closes) with messages in
// hand and unsettled; the next run holds everything until they are back,
// then handles every room in stream order from where the first stopped.
func TestCrashKeepsOrder(t *testing.T) {
	t.Parallel()
	ns := testutil.NATS(t)
	const rooms, msgs = 4, 20
	stream(t, ns.JS, rooms, msgs)

	nc1, err := nats.Connect(ns.URL)
	if err != nil {
		t.Fatal(err)
	}
	js1, err := jetstream.New(nc1)
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	var stuck atomic.Int32
	ctx1, cancel1 := context.WithCancel(context.Background())
	done1 := make(chan error, 1)
	go func() {
		done1 <- Run(ctx1, baseOptions(js1, nc1), func(stop, hard context.Context, m *Msg) (ackflow.Decision, bool) {
			room, i := rec.start(m)
			if i >= 5 { // the crash: never finishes these
				stuck.Add(1)
				<-hard.Done()
				return ackflow.Decision{}, false
			}
			rec.end(room)
			return ackflow.Decision{Action: ackflow.ActionAck}, true
		})
	}()
	testutil.Eventually(t, 20*time.Second, func() bool { return stuck.Load() == rooms }, "first run stuck on %d rooms", stuck.Load())
	nc1.Close() // no hand-back reaches the server: a crash
	cancel1()
	<-done1

	rec2 := newRecorder()
	for r := range rooms {
		rec2.next[fmt.Sprintf("r%d", r)] = 5
	}
	ctx2, cancel2 := context.WithCancel(context.Background())
	done2 := make(chan error, 1)
	go func() {
		done2 <- Run(ctx2, baseOptions(ns.JS, ns.NC), func(stop, hard context.Context, m *Msg) (ackflow.Decision, bool) {
			room, _ := rec2.start(m)
			rec2.end(room)
			return ackflow.Decision{Action: ackflow.ActionAck}, true
		})
	}()
	want := rooms * (msgs - 5)
	testutil.Eventually(t, 30*time.Second, func() bool { return rec2.count() >= want }, "second run handled %d of %d", rec2.count(), want)
	cancel2()
	<-done2
	if len(rec2.problems) > 0 {
		t.Fatalf("order broken after the crash: %v", rec2.problems[:min(5, len(rec2.problems))])
	}
	if rec2.count() != want {
		t.Fatalf("second run handled %d, want %d", rec2.count(), want)
	}
}

// TestDrainHandsBack: at shutdown, messages queued or cut short are handed
// back and the next run gets them, in order, without waiting out AckWait.
func TestDrainHandsBack(t *testing.T) {
	t.Parallel()
	ns := testutil.NATS(t)
	stream(t, ns.JS, 1, 10)
	o := baseOptions(ns.JS, ns.NC)
	o.AckWait = time.Minute // a lost hand-back would stall the test
	o.MinHandBack = 10 * time.Millisecond
	var started atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, o, func(stop, hard context.Context, m *Msg) (ackflow.Decision, bool) {
			started.Add(1)
			<-stop.Done() // every message waits for the shutdown
			return ackflow.Decision{}, false
		})
	}()
	testutil.Eventually(t, 10*time.Second, func() bool { return started.Load() == 1 }, "no message started")
	cancel()
	<-done
	rec := newRecorder()
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	go func() {
		done <- Run(ctx2, o, func(stop, hard context.Context, m *Msg) (ackflow.Decision, bool) {
			room, _ := rec.start(m)
			rec.end(room)
			return ackflow.Decision{Action: ackflow.ActionAck}, true
		})
	}()
	testutil.Eventually(t, 10*time.Second, func() bool { return rec.count() == 10 }, "handed-back messages not redelivered: %d of 10", rec.count())
	cancel2()
	<-done
	if len(rec.problems) > 0 {
		t.Fatal(rec.problems)
	}
}

// TestConfigureAndReady: Configure picks a new consumer's start and sees
// an existing one's configuration; Ready says whether Run created it.
func TestConfigureAndReady(t *testing.T) {
	t.Parallel()
	ns := testutil.NATS(t)
	stream(t, ns.JS, 1, 5)
	// run handles until want messages are done (so none is left in hand
	// for the next run), and reports the first one.
	run := func(want int64) (existing *jetstream.ConsumerInfo, created bool, first uint64) {
		o := baseOptions(ns.JS, ns.NC)
		o.Configure = func(_ context.Context, cfg *jetstream.ConsumerConfig, ex *jetstream.ConsumerInfo) error {
			existing = ex
			if ex == nil {
				cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, 3
			} else {
				cfg.DeliverPolicy, cfg.OptStartSeq = ex.Config.DeliverPolicy, ex.Config.OptStartSeq
			}
			return nil
		}
		o.Ready = func(_ *jetstream.ConsumerInfo, c bool) { created = c }
		var got atomic.Uint64
		var handled atomic.Int64
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- Run(ctx, o, func(stop, hard context.Context, m *Msg) (ackflow.Decision, bool) {
				got.CompareAndSwap(0, m.Seq)
				handled.Add(1)
				return ackflow.Decision{Action: ackflow.ActionAck}, true
			})
		}()
		testutil.Eventually(t, 10*time.Second, func() bool { return handled.Load() >= want }, "handled %d of %d", handled.Load(), want)
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		return existing, created, got.Load()
	}
	if ex, created, first := run(3); ex != nil || !created || first != 3 {
		t.Fatalf("first run: existing %v, created %v, first seq %d (want nil, true, 3)", ex != nil, created, first)
	}
	if _, err := ns.JS.Publish(testutil.Context(t, 5*time.Second), "t.r0", []byte("r0:5")); err != nil {
		t.Fatal(err)
	}
	if ex, created, first := run(1); ex == nil || ex.Config.OptStartSeq != 3 || created || first != 6 {
		t.Fatalf("second run: existing %v, created %v, first seq %d (want the consumer, false, 6)", ex != nil, created, first)
	}
}

// TestSharedHeartbeat: two engines share one process-wide Heartbeat: it
// holds both engines' messages while their handlers run, and keeps them
// from being redelivered for three AckWaits; an engine refuses a shared
// heartbeat too slow for its AckWait.
func TestSharedHeartbeat(t *testing.T) {
	t.Parallel()
	ns := testutil.NATS(t)
	stream(t, ns.JS, 2, 1)
	hb := ackflow.NewHeartbeat(100 * time.Millisecond)
	beat, stopBeat := context.WithCancel(context.Background())
	beating := make(chan struct{})
	go func() { defer close(beating); hb.Run(beat) }()
	defer func() { stopBeat(); <-beating }()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	release := make(chan struct{})
	var wg sync.WaitGroup
	for r := range 2 {
		o := baseOptions(ns.JS, ns.NC)
		o.Consumer = jetstream.ConsumerConfig{Durable: fmt.Sprint("C", r), FilterSubject: fmt.Sprint("t.r", r)}
		o.Heartbeat = hb
		wg.Go(func() {
			err := Run(ctx, o, func(stop, hard context.Context, m *Msg) (ackflow.Decision, bool) {
				<-release
				return ackflow.Decision{Action: ackflow.ActionAck}, true
			})
			if err != nil {
				t.Error(err)
			}
		})
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return hb.Len() == 2 }, "both engines' messages held by the shared heartbeat (%d)", hb.Len())
	// Well past AckWait (1s): without beats both would come back.
	time.Sleep(3 * time.Second) // the time under test, not a synchronisation
	close(release)
	testutil.Eventually(t, 10*time.Second, func() bool { return hb.Len() == 0 }, "messages released after settling (%d held)", hb.Len())
	for r := range 2 {
		info, err := ns.JS.Consumer(testutil.Context(t, 5*time.Second), "S", fmt.Sprint("C", r))
		if err != nil {
			t.Fatal(err)
		}
		ci, err := info.Info(testutil.Context(t, 5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if ci.Delivered.Consumer != 1 {
			t.Errorf("consumer C%d delivered %d times, want once (no redelivery while held)", r, ci.Delivered.Consumer)
		}
	}
	cancel()
	wg.Wait()

	o := baseOptions(ns.JS, ns.NC)
	o.Heartbeat = ackflow.NewHeartbeat(time.Second) // AckWait is 1s
	if err := Run(context.Background(), o, nil); err == nil || !strings.Contains(err.Error(), "third of AckWait") {
		t.Fatalf("a shared heartbeat slower than AckWait/3: got %v, want an error naming it", err)
	}
}
