package cmdexec_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/subjects"
)

// A cooldown (connector.HoldRoom) ends the command at once, ok:false and
// retryable with the wait in the result, and holds that room's next
// command for the wait while other rooms go on. A call that may have
// reached the platform (connector.Sent) is never sent again: one attempt,
// unknown_outcome, not retryable, dead-lettered.
func TestHoldRoomAndSent(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0)
	fx := newFake()
	const hold = 2 * time.Second
	fx.script = func(_ context.Context, c call) (connector.Response, error) {
		switch c.cmd.ID {
		case "a1":
			return connector.Response{}, connector.HoldRoom(errors.New("slow down"), hold)
		case "sent":
			return connector.Response{}, connector.Sent(errors.New("connection reset after the request was written"))
		}
		return connector.Response{Status: 200}, nil
	}
	e.start(e.options(fx))
	e.publish(cmdSubject("a", "send_message"), `{}`, subjects.HeaderMsgID, "a1")
	e.publish(cmdSubject("a", "send_message"), `{}`, subjects.HeaderMsgID, "a2")
	e.publish(cmdSubject("b", "send_message"), `{}`, subjects.HeaderMsgID, "b1")
	e.publish(cmdSubject("c", "send_message"), `{}`, subjects.HeaderMsgID, "sent")

	a1, _ := e.res.byID(t, "a1")
	if a1.OK || a1.Error == nil || !a1.Error.Retryable || a1.Error.RetryAfterMs != hold.Milliseconds() || a1.Attempts != 1 {
		t.Fatalf("a1: %+v %+v", a1, a1.Error)
	}
	if a2, _ := e.res.byID(t, "a2"); !a2.OK {
		t.Fatalf("a2: %+v", a2)
	}
	if b1, _ := e.res.byID(t, "b1"); !b1.OK {
		t.Fatalf("b1: %+v", b1)
	}
	at := map[string]time.Time{}
	for _, c := range fx.snapshot() {
		at[c.cmd.ID] = c.at
	}
	if gap := at["a2"].Sub(at["a1"]); gap < hold {
		t.Fatalf("room a's next command ran %s after the cooldown began, want at least %s", gap, hold)
	}
	if !at["b1"].Before(at["a2"]) {
		t.Fatal("room b waited for room a's cooldown")
	}
	if dl := e.waitDLQ("bridge.dlq.band.c1.a.send_message"); !strings.Contains(dl.Header.Get(subjects.HeaderError), "slow down") {
		t.Fatalf("a1 dead letter: %v", dl.Header)
	}

	sent, _ := e.res.byID(t, "sent")
	if sent.OK || sent.Error == nil || sent.Error.Code != subjects.ErrCodeUnknownOutcome || sent.Error.Retryable || sent.Attempts != 1 {
		t.Fatalf("sent: %+v %+v", sent, sent.Error)
	}
	if n := fx.count("sent"); n != 1 {
		t.Fatalf("a sent command was executed %d times", n)
	}
	if dl := e.waitDLQ("bridge.dlq.band.c1.c.send_message"); !strings.HasPrefix(dl.Header.Get(subjects.HeaderError), subjects.ErrCodeUnknownOutcome) {
		t.Fatalf("sent dead letter: %v", dl.Header)
	}
}

// streamExec is a platform whose commands stream: each attempt emits three
// deltas; the first attempt of "s1" fails after two of them.
type streamExec struct{ *fakeExec }

func (s streamExec) ExecuteStream(ctx context.Context, cmd connector.Command, emit func(connector.Event) error) (connector.Response, error) {
	n := s.count(cmd.ID) + 1 // this attempt's number
	for i := range 3 {
		if cmd.ID == "s1" && n == 1 && i == 2 {
			_, _ = s.Execute(ctx, cmd) // counted as an attempt
			return connector.Response{}, errors.New("stream reset")
		}
		if err := emit(connector.Event{Name: "Text_Delta", Data: json.RawMessage(`{"i":` + string(rune('0'+i)) + `}`)}); err != nil {
			return connector.Response{}, err
		}
	}
	return s.Execute(ctx, cmd)
}

// A streaming command's events are stored in order before its result, with
// the command id and their index; the attempt that runs again after a
// transient failure does not store the events it had emitted twice.
func TestStreamingCommand(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0)
	var order []string // "evt <seq>" or "res", as a subscriber sees them
	got := make(chan string, 64)
	sub, err := e.s.NC.Subscribe("bridge.*.band.c1.r.>", func(m *nats.Msg) {
		switch {
		case strings.HasPrefix(m.Subject, "bridge.res."):
			got <- "res"
			return
		case !strings.HasPrefix(m.Subject, "bridge.evt."):
			return // the command itself
		}
		ev, err := subjects.DecodeEvent(m.Data)
		if err != nil || ev.Seq == nil {
			got <- "bad event"
			return
		}
		got <- "evt " + ev.CommandID + " " + string(rune('0'+*ev.Seq))
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	e.start(e.options(streamExec{newFake()}))
	e.publish(cmdSubject("r", "stream_reply"), `{}`, subjects.HeaderMsgID, "s1")
	res, _ := e.res.byID(t, "s1")
	if !res.OK || res.Attempts != 2 {
		t.Fatalf("s1: %+v", res)
	}
	for len(order) == 0 || order[len(order)-1] != "res" {
		select {
		case s := <-got:
			order = append(order, s)
		case <-time.After(10 * time.Second):
			t.Fatalf("saw %v, no result", order)
		}
	}
	// Attempt 1 emits 0 and 1, attempt 2 emits 0, 1 and 2, then the result.
	want := []string{"evt s1 0", "evt s1 1", "evt s1 0", "evt s1 1", "evt s1 2", "res"}
	if strings.Join(order, ",") != strings.Join(want, ",") {
		t.Fatalf("seen %v, want %v", order, want)
	}
	st, err := e.s.JS.Stream(e.ctx, "BRIDGE_EVENTS")
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(e.ctx, jetstream.WithSubjectFilter("bridge.evt.band.c1.r.text_delta"))
	if err != nil {
		t.Fatal(err)
	}
	if n := info.State.Subjects["bridge.evt.band.c1.r.text_delta"]; n != 3 {
		t.Fatalf("%d events stored, want 3 (the repeated ones deduplicated)", n)
	}
	for seq := uint64(1); seq <= 3; seq++ {
		m, err := st.GetMsg(e.ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		ev, err := subjects.DecodeEvent(m.Data)
		if err != nil || ev.CommandID != "s1" || ev.Seq == nil || *ev.Seq != int64(seq-1) || m.Header.Get(subjects.HeaderMsgID) != ev.ID {
			t.Fatalf("stored event %d: %+v %v", seq, ev, err)
		}
	}
}

// TestSentAtTheDrainDeadline: a command whose call may have reached the
// platform when the drain deadline cut it short ends with an unknown
// outcome; it is not handed back, so a restarted executor does not send it
// again (a chat turn would be paid twice).
func TestSentAtTheDrainDeadline(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0)
	fx := newFake()
	started := make(chan struct{}, 1)
	fx.script = func(ctx context.Context, c call) (connector.Response, error) {
		if c.cmd.ID == "turn" && c.n == 1 {
			started <- struct{}{}
			<-ctx.Done() // streaming until the drain deadline cuts it
			return connector.Response{}, connector.Sent(ctx.Err())
		}
		return connector.Response{Status: 200}, nil
	}
	o := e.options(fx)
	o.DrainTimeout = 200 * time.Millisecond
	_, stop := e.start(o)
	e.publish(cmdSubject("a", "chat"), `{}`, subjects.HeaderMsgID, "turn")
	select {
	case <-started:
	case <-e.ctx.Done():
		t.Fatal("the command never started")
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	res, _ := e.res.byID(t, "turn")
	if res.OK || res.Error == nil || res.Error.Code != subjects.ErrCodeUnknownOutcome {
		t.Fatalf("result at the drain deadline: %+v %+v", res, res.Error)
	}
	// A new run finds nothing to redo: the next command runs, the turn does not.
	e.start(e.options(fx))
	e.publish(cmdSubject("a", "chat"), `{}`, subjects.HeaderMsgID, "after")
	if r, _ := e.res.byID(t, "after"); !r.OK {
		t.Fatalf("after: %+v", r)
	}
	if n := fx.count("turn"); n != 1 {
		t.Fatalf("the sent turn was executed %d times", n)
	}
}
