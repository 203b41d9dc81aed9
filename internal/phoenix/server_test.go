package phoenix

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// testServer is a small in-process Phoenix endpoint. It parses frames on
// its own (it does not use DecodeFrame) so a misunderstanding of the
// protocol in the client cannot cancel itself out here.
type testServer struct {
	t   *testing.T
	srv *httptest.Server
	ctx context.Context

	mu        sync.Mutex
	closed    bool
	handlers  sync.WaitGroup
	upgrades  []upgradeRec
	refusals  []refusal
	conns     []*srvConn
	frames    []srvFrame
	stallHB   bool
	joinCount map[string]int
	// joinReply decides a join's reply; n counts earlier joins of topic.
	joinReply func(topic string, n int) (status, response string, nullJoinRef, silent bool)
}

type upgradeRec struct {
	at     time.Time
	header http.Header
	query  string
}

type refusal struct {
	status int
	header http.Header
	body   string
}

type srvFrame struct {
	conn    int
	joinRef *string
	ref     *string
	topic   string
	event   string
	payload json.RawMessage
}

type srvConn struct {
	ts       *testServer
	idx      int
	ws       *websocket.Conn
	done     chan struct{}
	closeErr error // the client's close frame, once done is closed
}

func newTestServer(t *testing.T) *testServer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ts := &testServer{t: t, ctx: ctx, joinCount: map[string]int{}}
	ts.srv = httptest.NewServer(http.HandlerFunc(ts.handle))
	t.Cleanup(func() {
		ts.mu.Lock()
		ts.closed = true
		ts.mu.Unlock()
		cancel()
		ts.srv.Close()
		ts.handlers.Wait()
	})
	return ts
}

func (ts *testServer) url() string {
	return "ws" + strings.TrimPrefix(ts.srv.URL, "http") + "/socket/websocket?vsn=2.0.0&api_key=SECRETKEY"
}

func (ts *testServer) handle(w http.ResponseWriter, r *http.Request) {
	ts.mu.Lock()
	if ts.closed {
		ts.mu.Unlock()
		http.Error(w, "closed", http.StatusServiceUnavailable)
		return
	}
	ts.handlers.Add(1)
	defer ts.handlers.Done()
	ts.upgrades = append(ts.upgrades, upgradeRec{at: time.Now(), header: r.Header.Clone(), query: r.URL.RawQuery})
	if len(ts.refusals) > 0 {
		rf := ts.refusals[0]
		ts.refusals = ts.refusals[1:]
		ts.mu.Unlock()
		for k, v := range rf.header {
			w.Header()[k] = v
		}
		w.WriteHeader(rf.status)
		_, _ = w.Write([]byte(rf.body))
		return
	}
	ts.mu.Unlock()

	ws, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	ts.mu.Lock()
	sc := &srvConn{ts: ts, idx: len(ts.conns), ws: ws, done: make(chan struct{})}
	ts.conns = append(ts.conns, sc)
	ts.mu.Unlock()
	sc.serve()
}

func (sc *srvConn) serve() {
	ts := sc.ts
	defer close(sc.done)
	defer sc.ws.CloseNow()
	for {
		typ, data, err := sc.ws.Read(ts.ctx)
		if err != nil {
			sc.closeErr = err
			return
		}
		if typ != websocket.MessageText {
			continue
		}
		f, ok := parseSrvFrame(data)
		if !ok {
			ts.t.Errorf("server: client sent a malformed frame: %s", data)
			continue
		}
		f.conn = sc.idx
		ts.mu.Lock()
		ts.frames = append(ts.frames, f)
		stall := ts.stallHB
		ts.mu.Unlock()

		switch {
		case f.topic == "phoenix" && f.event == "heartbeat":
			if !stall {
				sc.send(nil, f.ref, "phoenix", "phx_reply", `{"status":"ok","response":{}}`)
			}
		case f.event == "phx_join":
			ts.mu.Lock()
			n := ts.joinCount[f.topic]
			ts.joinCount[f.topic]++
			decide := ts.joinReply
			ts.mu.Unlock()
			status, resp, nullJR, silent := "ok", `{"joined":true}`, false, false
			if decide != nil {
				status, resp, nullJR, silent = decide(f.topic, n)
			}
			if silent {
				continue
			}
			jr := f.joinRef
			if nullJR {
				jr = nil
			}
			sc.send(jr, f.ref, f.topic, "phx_reply", `{"status":"`+status+`","response":`+resp+`}`)
		case f.event == "phx_leave":
			sc.send(f.joinRef, f.ref, f.topic, "phx_reply", `{"status":"ok","response":{}}`)
			sc.send(f.joinRef, f.joinRef, f.topic, "phx_close", `{}`)
		case f.event == "noreply":
		case f.event == "fail":
			sc.send(f.joinRef, f.ref, f.topic, "phx_reply", `{"status":"error","response":{"reason":"nope"}}`)
		default:
			sc.send(f.joinRef, f.ref, f.topic, "phx_reply", `{"status":"ok","response":{"echo":"`+f.event+`"}}`)
		}
	}
}

func parseSrvFrame(data []byte) (srvFrame, bool) {
	var parts []json.RawMessage
	if json.Unmarshal(data, &parts) != nil || len(parts) != 5 {
		return srvFrame{}, false
	}
	var f srvFrame
	if json.Unmarshal(parts[0], &f.joinRef) != nil || json.Unmarshal(parts[1], &f.ref) != nil ||
		json.Unmarshal(parts[2], &f.topic) != nil || json.Unmarshal(parts[3], &f.event) != nil {
		return srvFrame{}, false
	}
	if !bytes.HasPrefix(bytes.TrimSpace(parts[4]), []byte("{")) {
		return srvFrame{}, false
	}
	f.payload = parts[4]
	return f, true
}

// send writes one frame; joinRef and ref may be nil (null).
func (sc *srvConn) send(joinRef, ref *string, topic, event, payload string) {
	b, err := json.Marshal([]any{joinRef, ref, topic, event, json.RawMessage(payload)})
	if err != nil {
		sc.ts.t.Errorf("server: marshal: %v", err)
		return
	}
	sc.raw(websocket.MessageText, b)
}

func (sc *srvConn) raw(typ websocket.MessageType, b []byte) {
	ctx, cancel := context.WithTimeout(sc.ts.ctx, 5*time.Second)
	defer cancel()
	_ = sc.ws.Write(ctx, typ, b) // the client may be gone; tests assert on what arrives
}

// close performs a close handshake with code and reason.
func (sc *srvConn) close(code websocket.StatusCode, reason string) {
	_ = sc.ws.Close(code, reason)
}

// conn returns the i-th accepted connection, waiting for it: the client
// may see the upgrade complete before the handler has recorded it.
func (ts *testServer) conn(i int) *srvConn {
	ts.t.Helper()
	var sc *srvConn
	eventually(ts.t, fmt.Sprintf("server connection %d", i), func() bool {
		ts.mu.Lock()
		defer ts.mu.Unlock()
		if i < len(ts.conns) {
			sc = ts.conns[i]
		}
		return sc != nil
	})
	return sc
}

func (ts *testServer) numConns() int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return len(ts.conns)
}

func (ts *testServer) numUpgrades() int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return len(ts.upgrades)
}

func (ts *testServer) upgrade(i int) upgradeRec {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.upgrades[i]
}

func (ts *testServer) setStall(on bool) {
	ts.mu.Lock()
	ts.stallHB = on
	ts.mu.Unlock()
}

func (ts *testServer) refuse(rf ...refusal) {
	ts.mu.Lock()
	ts.refusals = append(ts.refusals, rf...)
	ts.mu.Unlock()
}

// find returns the received frames that match.
func (ts *testServer) find(match func(srvFrame) bool) []srvFrame {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	var out []srvFrame
	for _, f := range ts.frames {
		if match(f) {
			out = append(out, f)
		}
	}
	return out
}

func joinsOf(topic string) func(srvFrame) bool {
	return func(f srvFrame) bool { return f.event == "phx_join" && f.topic == topic }
}

// ---- client-side harness ----

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// fastOptions shrinks every interval so tests run quickly but not so
// tight that a loaded -race run reconnects spuriously.
func fastOptions(url string) Options {
	return Options{
		URL:               url,
		HeartbeatInterval: time.Second,
		JoinTimeout:       3 * time.Second,
		CloseTimeout:      500 * time.Millisecond,
		RejoinDelays:      []time.Duration{10 * time.Millisecond},
		Backoff: Backoff{
			Base: time.Millisecond, Max: 20 * time.Millisecond,
			RapidFirst: time.Millisecond, RapidSecond: time.Millisecond,
			HoldDownBase: time.Millisecond, HoldDownStep: time.Millisecond, HoldDownMax: 20 * time.Millisecond,
			RestartMin: time.Millisecond, RestartMax: 2 * time.Millisecond,
			TryLaterMin: time.Millisecond, TryLaterMax: 2 * time.Millisecond,
			Refused: 20 * time.Millisecond,
		},
	}
}

type runner struct {
	s      *Socket
	cancel context.CancelFunc
	done   chan struct{}
	err    error // valid once done is closed
}

// startSocket runs a socket against ts until the test ends.
func startSocket(t *testing.T, opts Options) *runner {
	t.Helper()
	tr := &http.Transport{}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Transport: tr}
	}
	s := NewSocket(opts)
	ctx, cancel := context.WithCancel(context.Background())
	r := &runner{s: s, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.err = s.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(10 * time.Second):
			t.Errorf("Run did not return after cancel")
		}
		tr.CloseIdleConnections()
	})
	return r
}

func (r *runner) wait(t *testing.T) error {
	t.Helper()
	select {
	case <-r.done:
		return r.err
	case <-time.After(10 * time.Second):
		t.Fatalf("Run did not return")
		return nil
	}
}

// recorder collects onMessage calls.
type recorder struct {
	mu     sync.Mutex
	events []string
}

func (rc *recorder) on(event string, payload json.RawMessage) {
	if !json.Valid(payload) {
		panic("invalid payload delivered")
	}
	rc.mu.Lock()
	rc.events = append(rc.events, event)
	rc.mu.Unlock()
}

func (rc *recorder) got() []string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]string(nil), rc.events...)
}

func (rc *recorder) has(event string) bool {
	for _, e := range rc.got() {
		if e == event {
			return true
		}
	}
	return false
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func mustJoin(t *testing.T, c *Channel) {
	t.Helper()
	if _, err := c.Join(testCtx(t)); err != nil {
		t.Fatalf("join %s: %v", c.Topic(), err)
	}
}

func ptr(s string) *string { return &s }

func isReplyError(err error, reason string) bool {
	var re *ReplyError
	return errors.As(err, &re) && re.Reason() == reason
}
