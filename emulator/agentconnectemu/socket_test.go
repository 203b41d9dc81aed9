package agentconnectemu

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

func TestHandshakeRefusedWith403(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{})
	s.AddUser("eve", "pw")
	tok := s.Token(DefaultUser)
	id := mustSession(t, s, tok)
	cleared := mustSession(t, s, tok)
	s.ClearSessionData(cleared)
	for _, tc := range []struct {
		name, id, token string
		header          http.Header
	}{
		{"no token", id, "", nil},
		{"bad token", id, "a.b.c", nil},
		{"unknown session", "session_nope", tok, nil},
		{"other user", id, s.Token("eve"), nil},
		{"empty session data", cleared, tok, nil},
		{"bad header token", id, "", http.Header{"Authorization": {"Bearer nope"}}},
	} {
		_, resp, err := dial(t, s, tc.id, tc.token, tc.header)
		if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s: %v (%v)", tc.name, resp, err)
		}
	}
	s.RejectHandshakes(1)
	if _, resp, err := dial(t, s, id, tok, nil); err == nil || resp.StatusCode != 403 {
		t.Fatalf("RejectHandshakes: %v", err)
	}
	// The header works too, and the knob was used up.
	c, _, err := dial(t, s, id, "", http.Header{"Authorization": {"Bearer " + tok}})
	if err != nil {
		t.Fatal(err)
	}
	c.text("hi")
	c.waitFrame("reply", 0, ofType("text"))
}

func TestAcceptThenClose(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{AcceptThenClose: true})
	tok := s.Token(DefaultUser)
	id := mustSession(t, s, tok)
	c := mustDial(t, s, id, "a.b.c")
	if code := websocket.CloseStatus(c.waitClosed()); code != 4003 {
		t.Fatalf("bad token: close %v, want 4003", code)
	}
	s.ClearSessionData(id)
	c = mustDial(t, s, id, tok)
	if code := websocket.CloseStatus(c.waitClosed()); code != 4004 {
		t.Fatalf("empty data: close %v, want 4004", code)
	}
}

func TestPings(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{PingInterval: 10 * time.Millisecond, ReplyDelay: 60 * time.Millisecond})
	tok := s.Token(DefaultUser)
	id := mustSession(t, s, tok)
	c := mustDial(t, s, id, tok)
	c.waitFrame("ping", 0, ofType("ping"))
	for _, raw := range c.rawFrames() {
		var f map[string]any
		if json.Unmarshal([]byte(raw), &f) == nil && f["type"] == "ping" {
			if _, ok := f["timestamp"].(string); !ok || len(f) != 2 {
				t.Fatalf("ping frame %s, want only type and timestamp", raw)
			}
		}
	}
	// A client ping gets no answer; it is received and recorded.
	c.send(`{"type":"ping","content":""}`)
	eventually(t, "client ping recorded", func() bool {
		r := s.Received(id)
		return len(r) == 1 && r[0].Type == "ping" && r[0].Socket == 1
	})
	s.StallPings(true)
	// The writer is sequential: a ping that passed its check before the
	// stall is written before the first reply. None may follow it, over
	// a second reply's delay (six ping intervals).
	c.text("marker1")
	_, i := c.waitFrame("first reply", 0, withContent("text", "Echo: marker1"))
	c.text("marker2")
	_, j := c.waitFrame("second reply", i, withContent("text", "Echo: marker2"))
	c.mu.Lock()
	between := c.frames[i+1 : j]
	c.mu.Unlock()
	if len(between) != 0 {
		t.Fatalf("frames while pings were stalled: %v", between)
	}
	if c.count(func(f map[string]any) bool { return f["type"] != "ping" && f["type"] != "text" }) != 0 {
		t.Fatalf("unexpected frames %v", c.rawFrames())
	}
}

func TestSeveralSocketsPerSession(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{})
	tok := s.Token(DefaultUser)
	id := mustSession(t, s, tok)
	other := mustSession(t, s, tok)
	cs := []*wsClient{mustDial(t, s, id, tok), mustDial(t, s, id, tok), mustDial(t, s, id, tok)}
	bystander := mustDial(t, s, other, tok)
	eventually(t, "three sockets", func() bool { return s.Sockets(id) == 3 && s.Sockets(other) == 1 })

	cs[1].text("to everyone")
	for i, c := range cs {
		f, _ := c.waitFrame("reply", 0, withContent("text", "Echo: to everyone"))
		if f["sender"] != "ai1_"+id || f["receiver"] != "human_"+id {
			t.Fatalf("socket %d got %v", i, f)
		}
	}
	s.SendSystem(id, NoticeNewTopic)
	for _, c := range cs {
		c.waitFrame("notice", 0, withContent("system", NoticeNewTopic))
	}
	if r := s.Received(id); len(r) != 1 || r[0].Socket != 2 || r[0].Content != "to everyone" {
		t.Fatalf("received %+v", r)
	}
	if bystander.count(func(map[string]any) bool { return true }) != 0 {
		t.Fatalf("another session's socket got %v", bystander.rawFrames())
	}

	if n := s.DropSockets(id); n != 3 || s.Sockets(id) != 0 {
		t.Fatalf("dropped %d, %d left", n, s.Sockets(id))
	}
	for _, c := range cs {
		if code := websocket.CloseStatus(c.waitClosed()); code != -1 {
			t.Fatalf("a drop sent close code %v", code)
		}
	}
	if s.Sockets(other) != 1 {
		t.Fatal("DropSockets(id) touched another session")
	}
	again := mustDial(t, s, id, tok) // a reconnect works
	again.text("back")
	again.waitFrame("reply", 0, withContent("text", "Echo: back"))
}

func TestBadFrames(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{})
	tok := s.Token(DefaultUser)
	id := mustSession(t, s, tok)
	c := mustDial(t, s, id, tok)
	for _, raw := range []string{`not json`, `[1]`, `{"content":"no type"}`, `{"type":"shout"}`,
		`{"type":"text","content":5}`, `{"type":"text","metadata":[]}`, `{"type":"text","timestamp":"yesterday"}`} {
		c.send(raw)
	}
	eventually(t, "seven error frames", func() bool {
		return c.count(func(f map[string]any) bool {
			return f["type"] == "error" && strings.HasPrefix(f["content"].(string), invalidFormatPrefix)
		}) == 7
	})
	for _, raw := range c.rawFrames() {
		var f map[string]any
		_ = json.Unmarshal([]byte(raw), &f)
		if len(f) != 6 || f["sender"] != nil || f["metadata"] != nil {
			t.Fatalf("error frame %s, want six keys with nulls", raw)
		}
	}
	c.text("still open")
	c.waitFrame("reply", 0, withContent("text", "Echo: still open"))
	if n := len(s.Received(id)); n != 1 {
		t.Fatalf("%d frames recorded, want only the valid one", n)
	}

	// The server can send a bad frame too.
	s.SendRaw(id, `{"type":`)
	eventually(t, "raw frame", func() bool { return slices.Contains(c.rawFrames(), `{"type":`) })

	// A binary frame is an error and a close with 4000.
	if err := c.ws.Write(context.Background(), websocket.MessageBinary, []byte{1}); err != nil {
		t.Fatal(err)
	}
	if code := websocket.CloseStatus(c.waitClosed()); code != 4000 {
		t.Fatalf("binary frame: close %v", code)
	}
}

func TestCloseSocketsWithCode(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{})
	tok := s.Token(DefaultUser)
	id := mustSession(t, s, tok)
	c := mustDial(t, s, id, tok)
	eventually(t, "socket", func() bool { return s.Sockets(id) == 1 })
	s.CloseSockets(id, 1011, "middleware error")
	if code := websocket.CloseStatus(c.waitClosed()); code != 1011 {
		t.Fatalf("close %v", code)
	}
	eventually(t, "socket forgotten", func() bool { return s.Sockets(id) == 0 })
}

func TestTwentySessionsRoundTrip(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{NoRateLimits: true, MaxSessionsPerUser: -1})
	tok := mustLogin(t, s)
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		id := mustSession(t, s, tok)
		c := mustDial(t, s, id, tok)
		wg.Add(1)
		go func() {
			defer wg.Done()
			want := "Echo: hello " + id
			b, _ := json.Marshal(map[string]string{"type": "text", "content": "hello " + id})
			if err := c.ws.Write(context.Background(), websocket.MessageText, b); err != nil {
				errs <- err
				return
			}
			deadline := time.Now().Add(waitFor)
			for c.count(withContent("text", want)) == 0 {
				if time.Now().After(deadline) {
					errs <- errors.New("session " + id + ": no reply")
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
			if c.count(ofType("text")) != 1 {
				errs <- errors.New("session " + id + ": a reply of another session arrived")
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := len(s.Sessions()); n != 20 {
		t.Fatalf("%d sessions", n)
	}
}

func TestCloseStopsEverything(t *testing.T) {
	base := runtime.NumGoroutine()
	s := New(Options{PingInterval: 5 * time.Millisecond, MaxInactive: time.Hour, CleanupInterval: time.Millisecond})
	if _, err := s.Start(); err != nil {
		t.Fatal(err)
	}
	tok := s.Token(DefaultUser)
	id := mustSession(t, s, tok)
	aa := createSession(t, s, tok, `{"session_type":"agent_agent","agents":{"a":{"provider":"groq"},"b":{"provider":"groq"}}}`)
	c := mustDial(t, s, id, tok)
	c2 := mustDial(t, s, aa.body["session_id"].(string), tok)
	c.waitFrame("ping", 0, ofType("ping"))
	s.ForceCooldown(id, time.Hour)
	c.text("wait for the slow notice") // the reader now waits ReplyTimeout (30s)
	c.waitFrame("cooldown", 0, ofType("cooldown"))
	s.Close()
	if err := c2.waitClosed(); websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Fatalf("close: %v", err)
	}
	c.waitClosed()
	s.Close() // idempotent
	http.DefaultClient.CloseIdleConnections()
	eventually(t, "goroutines to end", func() bool { return runtime.NumGoroutine() <= base })
}

func TestSocketBoundAndEndSession(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{MaxSocketsPerSession: 1})
	tok := s.Token(DefaultUser)
	id := mustSession(t, s, tok)
	c := mustDial(t, s, id, tok)
	if _, resp, err := dial(t, s, id, tok, nil); err == nil || resp.StatusCode != 403 {
		t.Fatalf("second socket past the bound: %v", err)
	}
	s.EndSession(id, NoticeInactiveClosed)
	c.waitFrame("notice", 0, withContent("system", NoticeInactiveClosed))
	if got, _ := s.Session(id); got.Live || got.EndReason != "expired" {
		t.Fatalf("session %+v", got)
	}
	if r := do(t, "DELETE", s.URL()+SessionsPath+id, tok, "", ""); r.status != 404 {
		t.Fatalf("delete an ended session: %d", r.status)
	}
}
