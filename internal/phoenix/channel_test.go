package phoenix

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

func TestJoinPushRouting(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	r := startSocket(t, fastOptions(ts.url()))
	ctx := testCtx(t)

	var rec recorder
	a := r.s.Channel("room:a", map[string]string{"k": "v"}, rec.on)
	resp, err := a.Join(ctx)
	if err != nil {
		t.Fatalf("join: %v", err)
	}
	if string(resp) != `{"joined":true}` {
		t.Fatalf("join response = %s", resp)
	}
	joins := ts.find(joinsOf("room:a"))
	if len(joins) != 1 || *joins[0].joinRef != *joins[0].ref || *joins[0].joinRef != a.JoinRef() {
		t.Fatalf("join frame refs wrong: %+v, JoinRef %q", joins, a.JoinRef())
	}
	if string(joins[0].payload) != `{"k":"v"}` {
		t.Fatalf("join payload = %s", joins[0].payload)
	}
	if _, err := a.Join(ctx); !errors.Is(err, ErrAlreadyJoined) {
		t.Fatalf("second join: %v, want ErrAlreadyJoined", err)
	}

	// Routing: null and current join_ref are delivered, stale and unknown
	// topics dropped, in arrival order.
	sc := ts.conn(0)
	cur := a.JoinRef()
	before := r.s.Stats().DroppedFrames
	sc.send(nil, nil, "room:a", "null_ref", `{}`)
	sc.send(&cur, nil, "room:a", "current_ref", `{"n":1}`)
	sc.send(ptr("999"), nil, "room:a", "stale_ref", `{}`)
	sc.send(nil, nil, "room:unknown", "other_topic", `{}`)
	sc.send(&cur, nil, "room:a", "marker", `{}`)
	eventually(t, "marker", func() bool { return rec.has("marker") })
	if got, want := rec.got(), []string{"null_ref", "current_ref", "marker"}; !slices.Equal(got, want) {
		t.Fatalf("delivered %v, want %v", got, want)
	}
	if d := r.s.Stats().DroppedFrames - before; d != 2 {
		t.Fatalf("dropped %d frames, want 2", d)
	}

	// Push round trip carries the current join_ref.
	resp, err = a.Push(ctx, "ping", map[string]int{"x": 1})
	if err != nil || string(resp) != `{"echo":"ping"}` {
		t.Fatalf("push = %s, %v", resp, err)
	}
	pushes := ts.find(func(f srvFrame) bool { return f.event == "ping" })
	if len(pushes) != 1 || *pushes[0].joinRef != cur || string(pushes[0].payload) != `{"x":1}` {
		t.Fatalf("push frame wrong: %+v", pushes)
	}
	if _, err := a.Push(ctx, "fail", nil); !isReplyError(err, "nope") {
		t.Fatalf("push error reply: %v", err)
	}
	if _, err := a.Push(ctx, "ping", []int{1}); !errors.Is(err, ErrMalformedFrame) {
		t.Fatalf("array payload: %v", err)
	}

	// Leave: reply ok, no delivery afterwards.
	if err := a.Leave(ctx); err != nil {
		t.Fatalf("leave: %v", err)
	}
	if l := ts.find(func(f srvFrame) bool { return f.event == "phx_leave" }); len(l) != 1 || *l[0].joinRef != cur {
		t.Fatalf("leave frame wrong: %+v", l)
	}
	if _, err := a.Push(ctx, "ping", nil); !errors.Is(err, ErrNotJoined) {
		t.Fatalf("push after leave: %v", err)
	}
	if err := a.Leave(ctx); err != nil {
		t.Fatalf("second leave: %v", err)
	}
}

func TestJoinErrors(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	ts.joinReply = func(topic string, n int) (string, string, bool, bool) {
		switch topic {
		case "room:denied":
			return "error", `{"reason":"unauthorized"}`, false, false
		case "bogus:1":
			return "error", `{"reason":"unmatched topic"}`, true, false
		case "room:silent":
			return "", "", false, true
		}
		return "ok", `{}`, false, false
	}
	opts := fastOptions(ts.url())
	opts.JoinTimeout = 200 * time.Millisecond
	r := startSocket(t, opts)
	ctx := testCtx(t)

	denied := r.s.Channel("room:denied", nil, nil)
	if _, err := denied.Join(ctx); !isReplyError(err, "unauthorized") {
		t.Fatalf("denied join: %v", err)
	}
	if _, err := denied.Join(ctx); !isReplyError(err, "unauthorized") {
		t.Fatalf("denied join again (must not be ErrAlreadyJoined): %v", err)
	}
	if _, err := r.s.Channel("bogus:1", nil, nil).Join(ctx); !isReplyError(err, "unmatched topic") {
		t.Fatalf("unmatched topic join: %v", err)
	}
	silent := r.s.Channel("room:silent", nil, nil)
	if _, err := silent.Join(ctx); !errors.Is(err, ErrTimeout) {
		t.Fatalf("silent join: %v, want ErrTimeout", err)
	}
	eventually(t, "phx_leave after join timeout", func() bool {
		return len(ts.find(func(f srvFrame) bool { return f.event == "phx_leave" && f.topic == "room:silent" })) == 1
	})
	if _, err := r.s.Channel("room:x", "not an object", nil).Join(ctx); !errors.Is(err, ErrMalformedFrame) {
		t.Fatalf("string params: %v", err)
	}
}

func TestJoinWaitsForOpen(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	s := NewSocket(fastOptions(ts.url()))
	short, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := s.Channel("room:a", nil, nil).Join(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("join without Run: %v", err)
	}

	c := s.Channel("room:a", nil, nil)
	errc := make(chan error, 1)
	go func() { _, err := c.Join(testCtx(t)); errc <- err }()
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	if err := <-errc; err != nil {
		t.Fatalf("join once open: %v", err)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("Run after cancel = %v, want nil", err)
	}
}

func TestRejoinAfterChannelError(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	r := startSocket(t, fastOptions(ts.url()))
	var rec recorder
	a := r.s.Channel("room:a", nil, rec.on)
	mustJoin(t, a)
	old := a.JoinRef()

	sc := ts.conn(0)
	sc.send(ptr("12345"), ptr("12345"), "room:a", "phx_error", `{}`) // stale: ignored
	sc.send(&old, &old, "room:a", "phx_error", `{"reason":"channel_crash"}`)
	eventually(t, "rejoin after phx_error", func() bool {
		return len(ts.find(joinsOf("room:a"))) == 2 && a.Joined()
	})
	if len(rec.got()) != 0 {
		t.Fatalf("onMessage saw %v, want nothing (protocol frames are not events)", rec.got())
	}
	joins := ts.find(joinsOf("room:a"))
	if *joins[1].joinRef == old || *joins[1].joinRef != a.JoinRef() || joins[1].conn != 0 {
		t.Fatalf("rejoin must use a new join_ref on the same connection: %+v", joins[1])
	}

	// phx_close (server-initiated) is treated the same way.
	cur := a.JoinRef()
	sc.send(&cur, &cur, "room:a", "phx_close", `{}`)
	eventually(t, "rejoin after phx_close", func() bool {
		return len(ts.find(joinsOf("room:a"))) == 3 && a.Joined()
	})
	// A frame after them still arrives: only the protocol's own were held back.
	cur = a.JoinRef()
	sc.send(&cur, nil, "room:a", "message_created", `{}`)
	eventually(t, "an application event after phx_close", func() bool { return rec.has("message_created") })
	if got := rec.got(); len(got) != 1 {
		t.Fatalf("onMessage saw %v, want only message_created", got)
	}
}

func TestRejoinOnReconnect(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	ts.joinReply = func(topic string, n int) (string, string, bool, bool) {
		if topic == "room:b" && n > 0 {
			return "error", `{"reason":"unauthorized"}`, false, false
		}
		return "ok", `{}`, false, false
	}
	var mu sync.Mutex
	var opens []int
	var joinErrs []string
	opts := fastOptions(ts.url())
	opts.OnOpen = func(n int) { mu.Lock(); opens = append(opens, n); mu.Unlock() }
	opts.OnJoinError = func(topic string, err error) {
		if !isReplyError(err, "unauthorized") {
			t.Errorf("OnJoinError err = %v", err)
		}
		mu.Lock()
		joinErrs = append(joinErrs, topic)
		mu.Unlock()
	}
	r := startSocket(t, opts)
	ctx := testCtx(t)
	a := r.s.Channel("room:a", nil, nil)
	b := r.s.Channel("room:b", nil, nil)
	left := r.s.Channel("room:left", nil, nil)
	mustJoin(t, a)
	mustJoin(t, b)
	mustJoin(t, left)
	if err := left.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	oldA := a.JoinRef()

	r.s.Drop()
	eventually(t, "rejoin of room:a on the second connection", func() bool {
		j := ts.find(joinsOf("room:a"))
		return len(j) == 2 && j[1].conn == 1 && a.Joined()
	})
	eventually(t, "OnJoinError for room:b", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.Equal(joinErrs, []string{"room:b"})
	})
	if a.JoinRef() == oldA {
		t.Fatalf("rejoin reused join_ref %q", oldA)
	}
	if b.Joined() {
		t.Fatalf("refused channel still joined")
	}
	if _, err := b.Push(ctx, "ping", nil); !errors.Is(err, ErrNotJoined) {
		t.Fatalf("push on refused channel: %v", err)
	}
	// The push goes out after every rejoin frame, so once it is answered
	// the server has seen all rejoins: room:left must not be among them.
	if _, err := a.Push(ctx, "ping", nil); err != nil {
		t.Fatal(err)
	}
	if n := len(ts.find(joinsOf("room:left"))); n != 1 {
		t.Fatalf("left channel joined %d times, want 1", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(opens, []int{1, 2}) {
		t.Fatalf("OnOpen attempts %v, want [1 2]", opens)
	}
	if st := r.s.Stats(); st.Reconnects != 1 || st.Connects != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestMalformedFramesSkipped(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	r := startSocket(t, fastOptions(ts.url()))
	var rec recorder
	a := r.s.Channel("room:a", nil, rec.on)
	mustJoin(t, a)

	sc := ts.conn(0)
	before := r.s.Stats().DroppedFrames
	sc.raw(websocket.MessageText, []byte(`not json`))
	sc.raw(websocket.MessageText, []byte(`[1,2]`))
	sc.raw(websocket.MessageText, []byte(`[null,null,"room:a","evt",[]]`))
	sc.raw(websocket.MessageText, []byte(`{"topic":"room:a","event":"v1","payload":{},"ref":null}`))
	sc.raw(websocket.MessageBinary, []byte{0, 1, 1, 'x', 'y'})
	sc.send(nil, nil, "room:a", "after", `{}`)
	eventually(t, "frame after the malformed ones", func() bool { return rec.has("after") })
	if got := rec.got(); !slices.Equal(got, []string{"after"}) {
		t.Fatalf("delivered %v", got)
	}
	if d := r.s.Stats().DroppedFrames - before; d != 5 {
		t.Fatalf("dropped %d, want 5", d)
	}
	if n := ts.numConns(); n != 1 || !r.s.Connected() {
		t.Fatalf("connection did not survive: %d connections", n)
	}
}

func TestBackPressureKeepsHeartbeats(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	opts := fastOptions(ts.url())
	opts.HeartbeatInterval = 250 * time.Millisecond
	r := startSocket(t, opts)
	release := make(chan struct{})
	entered := make(chan struct{})
	a := r.s.Channel("room:a", nil, func(event string, _ json.RawMessage) {
		if event == "block" {
			close(entered)
			<-release
		}
	})
	mustJoin(t, a)
	ts.conn(0).send(nil, nil, "room:a", "block", `{}`)
	<-entered
	isHB := func(f srvFrame) bool { return f.event == "heartbeat" }
	start := len(ts.find(isHB))
	eventually(t, "heartbeats while onMessage blocks", func() bool { return len(ts.find(isHB)) >= start+3 })
	close(release)
	if _, err := a.Push(testCtx(t), "ping", nil); err != nil {
		t.Fatalf("push after release: %v", err)
	}
	if n, st := ts.numConns(), r.s.Stats(); n != 1 || st.MissedHeartbeats != 0 {
		t.Fatalf("blocked consumer caused a reconnect: conns=%d stats=%+v", n, st)
	}
}

func TestSendQueueFull(t *testing.T) {
	t.Parallel()
	s := NewSocket(Options{SendQueue: 1})
	lc := newLiveConn(s, nil, nil)
	lc.wdone = true // no writer starts: nothing drains the queue
	if err := lc.send([]byte("1")); err != nil {
		t.Fatal(err)
	}
	if err := lc.send([]byte("2")); !errors.Is(err, ErrSendQueueFull) {
		t.Fatalf("second send: %v", err)
	}
	if s.Stats().SendQueueFull != 1 {
		t.Fatalf("stats %+v", s.Stats())
	}
	lc.failOnce.Do(func() { close(lc.closing) }) // failed; there is no websocket to close
	if err := lc.send([]byte("3")); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("send after fail: %v", err)
	}
}

// WaitJoined returns once the channel is joined on the open connection:
// after a reconnect only when the rejoin is answered. A channel never
// joined, or whose rejoin was refused, is not waited for.
func TestWaitJoinedAfterReconnect(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	ts.joinReply = func(topic string, n int) (string, string, bool, bool) {
		switch {
		case topic == "room:a" && n == 1:
			return "", "", false, true // the first rejoin goes unanswered: retried after JoinTimeout
		case topic == "room:b" && n == 1:
			return "error", `{"reason":"unauthorized"}`, false, false
		}
		return "ok", `{}`, false, false
	}
	opts := fastOptions(ts.url())
	opts.JoinTimeout = 2 * time.Second
	r := startSocket(t, opts)
	ctx := testCtx(t)
	a := r.s.Channel("room:a", nil, nil)
	b := r.s.Channel("room:b", nil, nil)
	never := r.s.Channel("room:never", nil, nil)
	if err := never.WaitJoined(ctx); !errors.Is(err, ErrNotJoined) {
		t.Fatalf("WaitJoined of a channel never joined: %v, want ErrNotJoined", err)
	}
	mustJoin(t, a)
	mustJoin(t, b)
	if err := a.WaitJoined(ctx); err != nil {
		t.Fatalf("WaitJoined of a joined channel: %v", err)
	}

	r.s.Drop()
	eventually(t, "room:a's rejoin at the server", func() bool { return len(ts.find(joinsOf("room:a"))) == 2 })
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	err := a.WaitJoined(short)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitJoined while the rejoin is unanswered: %v, want it to wait", err)
	}
	if err := b.WaitJoined(ctx); !errors.Is(err, ErrNotJoined) {
		t.Fatalf("WaitJoined of a channel whose rejoin was refused: %v, want ErrNotJoined", err)
	}
	if err := a.WaitJoined(ctx); err != nil || !a.Joined() {
		t.Fatalf("WaitJoined once a rejoin was answered: %v (joined %v)", err, a.Joined())
	}
	if n := len(ts.find(joinsOf("room:a"))); n != 3 {
		t.Fatalf("room:a joined %d times, want 3 (join, unanswered rejoin, rejoin)", n)
	}
}

// TestLeaveEndsAWaitingPush: a push waiting for its reply returns ErrLeft
// once its channel is left; a joined channel nobody waits on keeps no
// channel for that (one per idle channel was 96 bytes per topic), and a
// connection with no reply outstanding no reply table.
func TestLeaveEndsAWaitingPush(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	r := startSocket(t, fastOptions(ts.url()))
	c := r.s.Channel("room:a", nil, nil)
	mustJoin(t, c)
	left := func() chan struct{} {
		r.s.mu.Lock()
		defer r.s.mu.Unlock()
		return c.left
	}
	if left() != nil {
		t.Fatal("a joined channel nobody waits on keeps its left channel")
	}
	r.s.mu.Lock()
	lc := r.s.conn
	r.s.mu.Unlock()
	lc.mu.Lock()
	pending := lc.pending
	lc.mu.Unlock()
	if pending != nil {
		t.Fatal("a connection with no reply outstanding keeps its reply table")
	}
	pushed := make(chan error, 1)
	go func() { _, err := c.Push(testCtx(t), "noreply", nil); pushed <- err }()
	eventually(t, "the push at the server", func() bool {
		return len(ts.find(func(f srvFrame) bool { return f.event == "noreply" })) > 0
	})
	if left() == nil {
		t.Fatal("a push waiting for its reply has no left channel to wait on")
	}
	if err := c.Leave(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if err := <-pushed; !errors.Is(err, ErrLeft) {
		t.Fatalf("push after leave: %v, want ErrLeft", err)
	}
	if left() != nil {
		t.Fatal("a left channel keeps its left channel")
	}
}
