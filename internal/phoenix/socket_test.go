package phoenix

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/bridgeworks/bridge/internal/tick"
	"github.com/rs/zerolog"
)

func TestHeartbeatTimeoutReconnectsAndRejoins(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	opts := fastOptions(ts.url())
	opts.HeartbeatInterval = 30 * time.Millisecond
	r := startSocket(t, opts)
	a := r.s.Channel("room:a", nil, nil)
	mustJoin(t, a)
	old := a.JoinRef()
	first := ts.conn(0)

	ts.setStall(true)
	<-first.done // the client closes the silent connection
	if ce := websocket.CloseStatus(first.closeErr); ce != websocket.StatusNormalClosure ||
		!strings.Contains(first.closeErr.Error(), "heartbeat timeout") {
		t.Fatalf("server saw close %v, want 1000 heartbeat timeout", first.closeErr)
	}
	if r.s.Stats().MissedHeartbeats == 0 {
		t.Fatalf("missed heartbeat not counted")
	}
	ts.setStall(false)
	eventually(t, "rejoin on a later connection", func() bool {
		j := ts.find(joinsOf("room:a"))
		last := j[len(j)-1]
		return last.conn > 0 && a.Joined() && *last.joinRef == a.JoinRef()
	})
	if a.JoinRef() == old {
		t.Fatalf("rejoin reused join_ref %q", old)
	}
}

func TestUpgrade429HonoursRetryAfter(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	ts.refuse(refusal{
		status: http.StatusTooManyRequests,
		body:   `{"error":{"code":"too_many_requests","message":"reconnect rate-limited","request_id":"req-1","retry_after":0.3}}`,
	})
	var mu sync.Mutex
	var causes []error
	opts := fastOptions(ts.url())
	opts.OnClose = func(err error) { mu.Lock(); causes = append(causes, err); mu.Unlock() }
	r := startSocket(t, opts)
	eventually(t, "connection after the refusal", r.s.Connected)

	if gap := ts.upgrade(1).at.Sub(ts.upgrade(0).at); gap < 300*time.Millisecond {
		t.Fatalf("redialled after %v, before retry_after 300ms", gap)
	}
	mu.Lock()
	defer mu.Unlock()
	var ue *UpgradeError
	if len(causes) != 1 || !errors.As(causes[0], &ue) {
		t.Fatalf("OnClose causes %v", causes)
	}
	if ue.Status != 429 || ue.Code != "too_many_requests" || ue.RetryAfter != 300*time.Millisecond {
		t.Fatalf("upgrade error %+v", ue)
	}
}

func TestRefusedUpgradeIsRetried(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	ts.refuse(refusal{status: http.StatusForbidden}, refusal{status: http.StatusServiceUnavailable, body: `{"code":"tracking_failed"}`})
	r := startSocket(t, fastOptions(ts.url()))
	eventually(t, "connection after 403 and 503", r.s.Connected)
	if gap := ts.upgrade(1).at.Sub(ts.upgrade(0).at); gap < 20*time.Millisecond {
		t.Fatalf("403 retried after %v, want at least Backoff.Refused", gap)
	}
}

func TestStopIsTerminal(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	r := startSocket(t, fastOptions(ts.url()))
	a := r.s.Channel("room:a", nil, nil)
	mustJoin(t, a)
	superseded := errors.New("superseded")
	r.s.Stop(superseded)
	r.s.Stop(errors.New("second stop is ignored"))
	if err := r.wait(t); err != superseded {
		t.Fatalf("Run = %v, want the Stop error", err)
	}
	<-ts.conn(0).done
	if n := ts.numUpgrades(); n != 1 {
		t.Fatalf("%d upgrades after Stop, want 1", n)
	}
	if err := r.s.Run(context.Background()); err != superseded {
		t.Fatalf("Run after Stop = %v", err)
	}
	if _, err := r.s.Channel("room:b", nil, nil).Join(testCtx(t)); !errors.Is(err, ErrStopped) {
		t.Fatalf("join after Stop: %v", err)
	}
}

func TestServerCloseCodes(t *testing.T) {
	t.Parallel()
	t.Run("1008 is terminal", func(t *testing.T) {
		t.Parallel()
		ts := newTestServer(t)
		r := startSocket(t, fastOptions(ts.url()))
		eventually(t, "connected", r.s.Connected)
		ts.conn(0).close(websocket.StatusPolicyViolation, "bad agent")
		err := r.wait(t)
		var ce *CloseError
		if !errors.As(err, &ce) || ce.Code != 1008 || ce.Reason != "bad agent" {
			t.Fatalf("Run = %v, want CloseError 1008", err)
		}
	})
	for _, code := range []websocket.StatusCode{websocket.StatusGoingAway, websocket.StatusNormalClosure, websocket.StatusServiceRestart, websocket.StatusInternalError} {
		t.Run(code.String()+" reconnects", func(t *testing.T) {
			t.Parallel()
			ts := newTestServer(t)
			opts := fastOptions(ts.url())
			opts.Backoff.RestartMin, opts.Backoff.RestartMax = 100*time.Millisecond, 120*time.Millisecond
			r := startSocket(t, opts)
			a := r.s.Channel("room:a", nil, nil)
			mustJoin(t, a)
			closedAt := time.Now()
			ts.conn(0).close(code, "drain")
			eventually(t, "rejoin after close", func() bool {
				return len(ts.find(joinsOf("room:a"))) == 2 && a.Joined()
			})
			gap := ts.upgrade(1).at.Sub(closedAt)
			if code == websocket.StatusServiceRestart && gap < 100*time.Millisecond {
				t.Fatalf("1012 reconnected after %v, want >= RestartMin", gap)
			}
		})
	}
}

func TestRunTwice(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	r := startSocket(t, fastOptions(ts.url()))
	eventually(t, "connected", r.s.Connected)
	if err := r.s.Run(context.Background()); !errors.Is(err, ErrRunning) {
		t.Fatalf("second Run = %v", err)
	}
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (sb *syncBuffer) Write(p []byte) (int, error) {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	return sb.b.Write(p)
}

func (sb *syncBuffer) String() string {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	return sb.b.String()
}

func TestHeadersSentAndSecretsNotLogged(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	ts.refuse(refusal{status: http.StatusUnauthorized, body: `{"error":{"code":"bad_key","message":"no"}}`})
	var logs syncBuffer
	opts := fastOptions(ts.url())
	opts.Header = http.Header{"X-Api-Key": {"SECRETKEY"}}
	opts.Logger = zerolog.New(&logs).Level(zerolog.DebugLevel)
	r := startSocket(t, opts)
	var rec recorder
	a := r.s.Channel("room:a", map[string]string{"token": "SECRETPARAM"}, rec.on)
	mustJoin(t, a)
	ts.conn(0).send(nil, nil, "room:a", "evt", `{"content":"SECRETPAYLOAD"}`)
	ts.conn(0).raw(websocket.MessageText, []byte(`["x",null,"room:a","evt",["SECRETPAYLOAD"]]`))
	eventually(t, "push", func() bool { return rec.has("evt") })
	r.s.Drop()
	eventually(t, "reconnect", func() bool { return ts.numConns() == 2 && a.Joined() })

	if got := ts.upgrade(0).header.Get("X-Api-Key"); got != "SECRETKEY" {
		t.Fatalf("x-api-key header = %q", got)
	}
	if !strings.Contains(ts.upgrade(0).query, "vsn=2.0.0") {
		t.Fatalf("query = %q", ts.upgrade(0).query)
	}
	out := logs.String()
	if strings.Contains(out, "SECRET") {
		t.Fatalf("secret leaked into logs:\n%s", out)
	}
	if !strings.Contains(out, "api_key=REDACTED") || !strings.Contains(out, "upgrade refused") {
		t.Fatalf("expected redacted URL and refusal in logs:\n%s", out)
	}
}

func TestDialErrorRedacted(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var cause error
	opts := fastOptions("ws://127.0.0.1:1/socket/websocket?api_key=SECRETKEY")
	opts.OnClose = func(err error) { mu.Lock(); cause = err; mu.Unlock() }
	opts.Terminal = func(error) bool { return true }
	r := startSocket(t, opts)
	err := r.wait(t)
	if err == nil || strings.Contains(err.Error(), "SECRET") || !strings.Contains(err.Error(), "REDACTED") {
		t.Fatalf("dial error not redacted: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if cause != err {
		t.Fatalf("OnClose got %v, Run returned %v", cause, err)
	}
}

func TestStopInterruptsDial(t *testing.T) {
	t.Parallel()
	// A TCP listener that never answers the upgrade.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	var mu sync.Mutex
	accepted := make(chan struct{}, 1)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			select {
			case accepted <- struct{}{}:
			default:
			}
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	opts := fastOptions("ws://" + ln.Addr().String() + "/socket/websocket")
	opts.DialTimeout = time.Minute
	r := startSocket(t, opts)
	<-accepted
	start := time.Now()
	r.s.Stop(nil)
	if err := r.wait(t); err != nil {
		t.Fatalf("Run = %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Stop took %v during a dial", d)
	}
}

// TestSocketLogsNameTheURL: every line the socket logs carries its URL,
// redacted, after the caller's own context.
func TestSocketLogsNameTheURL(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	s := NewSocket(Options{URL: "wss://h.example/socket/websocket?api_key=secret&vsn=2.0.0",
		Logger: zerolog.New(&buf).With().Str("connection", "c1").Logger()})
	s.log.Warn().Msg("one")
	got := buf.String()
	for _, want := range []string{`"connection":"c1"`, `"url":"wss://h.example/socket/websocket?api_key=REDACTED&vsn=REDACTED"`, `"message":"one"`} {
		if !strings.Contains(got, want) {
			t.Errorf("log line %s lacks %s", got, want)
		}
	}
	if strings.Contains(got, "secret") {
		t.Errorf("log line %s shows the key", got)
	}
	// With DialTarget the URL only names the socket: it is not kept with
	// its credentials.
	s = NewSocket(Options{URL: "wss://h.example/socket/websocket?api_key=secret",
		DialTarget: func() (string, http.Header, error) { return "", nil, errors.New("unused") }})
	if strings.Contains(s.opts.URL, "secret") {
		t.Errorf("the socket keeps its URL %s", s.opts.URL)
	}
}

// TestStopInterruptsDialGateAndBackoff: Stop ends a wait for a dial slot
// and a wait between dials at once.
func TestStopInterruptsDialGateAndBackoff(t *testing.T) {
	t.Parallel()
	t.Run("gate", func(t *testing.T) {
		t.Parallel()
		opts := fastOptions("ws://127.0.0.1:1/socket/websocket")
		waiting := make(chan struct{})
		opts.DialGate = func(ctx context.Context) error { close(waiting); <-ctx.Done(); return ctx.Err() }
		r := startSocket(t, opts)
		<-waiting
		r.s.Stop(nil)
		if err := r.wait(t); err != nil {
			t.Fatalf("Run = %v", err)
		}
	})
	t.Run("backoff", func(t *testing.T) {
		t.Parallel()
		opts := fastOptions("ws://127.0.0.1:1/socket/websocket") // refused at once
		opts.Backoff = Backoff{Base: time.Hour, Max: time.Hour}
		failed := make(chan struct{}, 1)
		opts.OnClose = func(error) {
			select {
			case failed <- struct{}{}:
			default:
			}
		}
		r := startSocket(t, opts)
		<-failed // Run waits an hour before the next dial
		r.s.Stop(nil)
		if err := r.wait(t); err != nil {
			t.Fatalf("Run = %v", err)
		}
	})
}

// TestWriteTimeoutClosesTheConnection: a write the peer does not take
// within WriteTimeout ends the connection.
func TestWriteTimeoutClosesTheConnection(t *testing.T) {
	t.Parallel()
	// A server that accepts the upgrade and never reads.
	hold := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		<-hold
	}))
	t.Cleanup(func() { close(hold); srv.Close() })
	opts := fastOptions("ws" + strings.TrimPrefix(srv.URL, "http") + "/socket/websocket")
	opts.WriteTimeout = 200 * time.Millisecond
	opts.HeartbeatInterval = time.Hour
	opts.Backoff = Backoff{Base: time.Hour, Max: time.Hour}
	closed := make(chan error, 1)
	opts.OnClose = func(err error) {
		select {
		case closed <- err:
		default:
		}
	}
	r := startSocket(t, opts)
	eventually(t, "connected", r.s.Connected)
	r.s.mu.Lock()
	lc := r.s.conn
	r.s.mu.Unlock()
	frame := bytes.Repeat([]byte("a"), 1<<20)
	for range 64 { // far more than the socket buffers hold
		if err := lc.send(frame); err != nil {
			break
		}
	}
	// The cause is the writer's deadline or the reader's read of the
	// closed socket, whichever fails first.
	select {
	case err := <-closed:
		if err == nil {
			t.Fatal("connection ended without a cause")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a blocked write did not end the connection")
	}
}

// TestHeartbeatsOnASharedWheel: sockets sharing Options.Heartbeats each
// send heartbeats on its period, and a silent server is still caught: the
// unanswered heartbeat closes the connection, which redials.
func TestHeartbeatsOnASharedWheel(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	wheel := tick.New(64 * time.Millisecond)
	opts := fastOptions(ts.url())
	opts.Heartbeats = wheel
	a, b := startSocket(t, opts), startSocket(t, opts)
	mustJoin(t, a.s.Channel("room:a", nil, nil))
	mustJoin(t, b.s.Channel("room:b", nil, nil))
	beats := func(conn int) int {
		return len(ts.find(func(f srvFrame) bool { return f.event == EventHeartbeat && f.conn == conn }))
	}
	eventually(t, "heartbeats on both sockets", func() bool { return beats(0) >= 3 && beats(1) >= 3 })
	ts.setStall(true)
	eventually(t, "a missed heartbeat on each socket", func() bool {
		return a.s.Stats().MissedHeartbeats > 0 && b.s.Stats().MissedHeartbeats > 0
	})
	ts.setStall(false)
	eventually(t, "both redialled", func() bool {
		return a.s.Stats().Reconnects > 0 && b.s.Stats().Reconnects > 0 && a.s.Connected() && b.s.Connected()
	})
}
