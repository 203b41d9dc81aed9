package polyaiemu

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// TestDropSocketsResumeFromCursor: a socket dropped without a close
// frame; events sent meanwhile come back on a reconnect with the cursor.
func TestDropSocketsResumeFromCursor(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{})
	c, sid, tok := joined(t, s, "")
	last := c.flat()[len(c.flat())-1].seq()
	s.DropSockets(sid)
	if code := websocket.CloseStatus(c.waitClosed()); code != -1 {
		t.Fatalf("drop sent close code %v", code)
	}
	eventually(t, "socket forgotten", func() bool { return s.Connections() == 0 })
	s.Say(sid, AgentMessage{Text: "while you were away"})
	r := mustDial(t, s, sid, tok, strconv.FormatInt(last, 10))
	got := r.waitN("missed message", 1, ofType(TypeAgentMessage))
	if len(got) != 2 || got[1].Payload["text"] != "while you were away" || got[1].seq() != last+1 {
		t.Fatalf("resumed replay %s", types(got))
	}
	if info, _ := s.Session(sid); info.Ended {
		t.Fatal("a dropped socket ended the session")
	}
}

// TestDropSocketsAfterMidStream cuts a streamed reply after its second
// chunk; a reconnect from the last sequence seen gets the rest.
func TestDropSocketsAfterMidStream(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{ChunkSize: 2, NoAutoReply: true})
	c, sid, tok := joined(t, s, `{"streaming_enabled": true}`)
	s.DropSocketsAfter(sid, 2)
	s.Say(sid, AgentMessage{Text: "abcdefgh"}) // 4 chunks
	c.waitClosed()
	var seen []wireEvent
	for _, e := range c.flat() {
		if e.Type == TypeAgentMessageChunk && e.Payload["message_id"] != chunksOf(c.flat())[0].Payload["message_id"] {
			seen = append(seen, e)
		}
	}
	if len(seen) != 2 || assemble(seen) != "abcd" {
		t.Fatalf("before the drop: %s", types(seen))
	}
	r := mustDial(t, s, sid, tok, strconv.FormatInt(seen[1].seq(), 10))
	rest := chunksOf(r.waitN("rest", 2, ofType(TypeAgentMessageChunk)))
	if assemble(rest) != "efgh" || rest[1].Payload["is_complete"] != true || rest[0].Payload["chunk_index"] != 3.0 {
		t.Fatalf("after the reconnect: %v", rest)
	}
	// The knob fired once: this socket stays.
	s.Say(sid, AgentMessage{Text: "more"})
	r.waitN("more", 2, func(e wireEvent) bool { return e.Type == TypeAgentMessageChunk && e.Payload["is_complete"] == true })
}

// TestDropUserMessages: a silently dropped message gets no echo; the
// resend with the same client_event_id is echoed once and recorded once.
func TestDropUserMessages(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{})
	c, sid, _ := joined(t, s, "")
	if !s.DropUserMessages(sid, 1) || s.DropUserMessages("nope", 1) {
		t.Fatal("knob result")
	}
	c.sendEvent(TypeUserMessage, map[string]any{"text": "hello"}, "m1")
	c.sendEvent(TypeHeartbeat, map[string]any{}, "") // read after m1: its echo proves m1 was handled
	c.waitType(TypeHeartbeat, 1)
	if slices.ContainsFunc(c.flat(), ofType(TypeUserMessage)) || len(s.UserMessages(sid)) != 0 {
		t.Fatal("dropped message was echoed or recorded")
	}
	c.sendEvent(TypeUserMessage, map[string]any{"text": "hello"}, "m1")
	c.waitN("reply", 2, ofType(TypeAgentMessage))
	msgs := s.UserMessages(sid)
	echoes := 0
	for _, e := range c.flat() {
		if e.Type == TypeUserMessage && e.custom("client_event_id") == "m1" {
			echoes++
		}
	}
	if echoes != 1 || len(msgs) != 1 || msgs[0].Duplicate {
		t.Fatalf("echoes %d, recorded %+v", echoes, msgs)
	}
	// A resend of a message that was not dropped is a duplicate turn.
	c.sendEvent(TypeUserMessage, map[string]any{"text": "hello"}, "m1")
	c.waitN("second echo", 2, ofType(TypeUserMessage))
	if info, _ := s.Session(sid); info.Duplicates != 1 || info.Messages != 2 || !s.UserMessages(sid)[1].Duplicate {
		t.Fatalf("duplicates %+v", info)
	}

	// "" drops on any session.
	d, sid2, _ := joined(t, s, "")
	s.DropUserMessages("", 1)
	d.sendEvent(TypeUserMessage, map[string]any{"text": "lost"}, "x")
	d.sendEvent(TypeHeartbeat, map[string]any{}, "")
	d.waitType(TypeHeartbeat, 1)
	if len(s.UserMessages(sid2)) != 0 {
		t.Fatal("global drop did not drop")
	}
}

func TestFailReplies(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{})
	sid, tok := newSession(t, s, "")
	c := mustDial(t, s, sid, tok, "")
	s.FailReplies(sid, 1, "")
	c.sendEvent(TypeRequestJoin, map[string]any{}, "j1")
	e := c.waitType(TypeSystemMessage, 1)
	if e.Payload["message"] != errCannotStart || e.Payload["level"] != LevelError || e.custom("client_event_id") != "j1" {
		t.Fatalf("join failure %v %v", e.Payload, e.Metadata)
	}
	if info, _ := s.Session(sid); info.Agent != AgentNone {
		t.Fatalf("failed join joined: %s", info.Agent)
	}
	c.sendEvent(TypeRequestJoin, map[string]any{}, "j2")
	c.waitType(TypeAgentJoined, 1)
	s.FailReplies(sid, 1, "")
	c.sendEvent(TypeUserMessage, map[string]any{"text": "x"}, "m1")
	e = c.waitType(TypeSystemMessage, 2)
	if e.Payload["message"] != errCannotRespond || e.custom("client_event_id") != "m1" {
		t.Fatalf("reply failure %v", e.Payload)
	}
	s.FailReplies(sid, 1, "Our system is experiencing high load. Please try again in a moment.")
	c.sendEvent(TypeUserMessage, map[string]any{"text": "y"}, "m2")
	if e = c.waitType(TypeSystemMessage, 3); e.Payload["message"] != "Our system is experiencing high load. Please try again in a moment." {
		t.Fatalf("custom failure %v", e.Payload)
	}
	c.sendEvent(TypeUserMessage, map[string]any{"text": "z"}, "m3")
	c.waitN("answer after the faults", 2, ofType(TypeAgentMessage))
	if n := len(s.UserMessages(sid)); n != 3 {
		t.Fatalf("recorded %d messages, want 3 (failed ones are echoed and kept)", n)
	}
	s.SendSystemMessage(sid, LevelWarning, "maintenance soon")
	if e = c.waitType(TypeSystemMessage, 4); e.Payload["level"] != LevelWarning || e.Sequence != nil {
		t.Fatalf("system message %v", e.Payload)
	}
	s.SendMalformed(sid)
	eventually(t, "malformed frame", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.bad) == 1
	})
}

func TestRejectHandshakes(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{})
	sid, tok := newSession(t, s, "")
	s.RejectHandshakes(1, http.StatusTooManyRequests, 3*time.Second)
	if h := refusal(t, socketURL(s, sid, tok, ""), 429, "too many requests"); h.Get("Retry-After") != "3" {
		t.Fatalf("Retry-After %q", h.Get("Retry-After"))
	}
	mustDial(t, s, sid, tok, "")
}

func TestExpireSessionAndToken(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{})
	c, sid, tok := joined(t, s, "")
	s.ExpireSession(sid)
	if e := c.waitType(TypeSessionEnd, 1); e.Payload["reason"] != ReasonUserAbandoned {
		t.Fatalf("reason %v", e.Payload)
	}
	if code := websocket.CloseStatus(c.waitClosed()); code != websocket.StatusNormalClosure {
		t.Fatalf("close %v", code)
	}
	refusal(t, socketURL(s, sid, tok, ""), 404, "session not found")

	// An expired token: the open socket stays, new handshakes and new
	// sessions with it are refused.
	d, sid2, tok2 := joined(t, s, "")
	if !s.ExpireToken(tok2) || s.ExpireToken("not-a-token") {
		t.Fatal("ExpireToken result")
	}
	refusal(t, socketURL(s, sid2, tok2, ""), 401, "authentication failed")
	status, body, _ := post(t, s.URL()+SessionsPath, http.Header{"Authorization": {"Bearer " + tok2}}, "")
	if status != 401 || body["message"] != "Invalid access token" {
		t.Fatalf("session with an expired token: %d %v", status, body)
	}
	d.sendEvent(TypeHeartbeat, map[string]any{}, "")
	d.waitType(TypeHeartbeat, 1)
}

func TestCloseSockets(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{})
	c, sid, tok := joined(t, s, "")
	s.CloseSockets(sid, 4002, "app error")
	err := c.waitClosed()
	if code := websocket.CloseStatus(err); code != 4002 {
		t.Fatalf("close %v", err)
	}
	mustDial(t, s, sid, tok, "").waitType(TypeSessionStart, 1)
}

// TestIdleTimeout: heartbeats keep a session alive; silence ends it
// with REASON_USER_ABANDONED, with or without a socket.
func TestIdleTimeout(t *testing.T) {
	t.Parallel()
	const idle = 400 * time.Millisecond
	s := newServer(t, Options{IdleTimeout: idle})
	c, sid, _ := joined(t, s, "")
	quiet, _ := newSession(t, s, "")
	start := time.Now()
	for i := 1; time.Since(start) < 2*idle; i++ {
		c.sendEvent(TypeHeartbeat, map[string]any{}, "")
		c.waitType(TypeHeartbeat, i)
		time.Sleep(idle / 8) // pacing the heartbeats, not synchronising
	}
	if info, _ := s.Session(sid); info.Ended {
		t.Fatal("a session sending heartbeats timed out")
	}
	if info, _ := s.Session(quiet); !info.Ended || info.EndReason != ReasonUserAbandoned {
		t.Fatalf("silent session %+v", info)
	}
	e := c.waitType(TypeSessionEnd, 1)
	if e.Payload["reason"] != ReasonUserAbandoned || time.Since(start) < 2*idle {
		t.Fatalf("idle end %v", e.Payload)
	}
	c.waitClosed()
}

// TestManySessions plays 50 sessions of 20 messages each, concurrently,
// and checks every message is recorded once and answered once.
func TestManySessions(t *testing.T) {
	t.Parallel()
	const sessions, messages = 50, 20
	s := newServer(t, Options{})
	errs := make(chan error, sessions)
	for i := range sessions {
		go func() {
			errs <- func() (err error) {
				defer func() {
					if r := recover(); r != nil {
						err = fmt.Errorf("session %d: %v", i, r)
					}
				}()
				c, sid, _ := joined(t, s, "")
				for m := range messages {
					c.sendEvent(TypeUserMessage, map[string]any{"text": fmt.Sprint(i, "/", m)}, fmt.Sprint("c", m))
				}
				c.waitN("replies", messages+1, ofType(TypeAgentMessage))
				if info, _ := s.Session(sid); info.Messages != messages || info.Duplicates != 0 {
					return fmt.Errorf("session %d: %+v", i, info)
				}
				return nil
			}()
		}()
	}
	for range sessions {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// TestManyIdleSessions creates 10,000 sessions without sockets: no
// goroutine of their own, and the one idle check ends them all.
func TestManyIdleSessions(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{IdleTimeout: 200 * time.Millisecond})
	for range 10000 {
		if _, err := s.CreateSession(SessionOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "all sessions idle-ended", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.live) == 0
	})
	if info := s.Sessions(); len(info) != 10000 || info[9999].EndReason != ReasonUserAbandoned {
		t.Fatalf("%d sessions, last %+v", len(info), info[len(info)-1])
	}
}

func TestSessionLimits(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{MaxSessions: 1, MaxTokens: 2, MaxHistory: 4})
	info, err := s.CreateSession(SessionOptions{Streaming: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateSession(SessionOptions{}); err == nil {
		t.Fatal("session limit not enforced")
	}
	status, body, _ := post(t, s.URL()+SessionsPath, http.Header{"Authorization": {"Bearer " + info.Token}}, "")
	if status != 500 || body["message"] != "Failed to create session" {
		t.Fatalf("over the session limit: %d %v", status, body)
	}
	status, body, _ = post(t, s.URL()+AccessTokenPath, http.Header{"X-Token": {s.ConnectorToken()}, "X-Host": {s.Host()}}, "")
	if status != 500 || body["message"] != "Failed to create access token" {
		t.Fatalf("over the token limit: %d %v", status, body)
	}
	// A full history ends the session loudly.
	c := mustDial(t, s, info.ID, info.Token, "")
	c.sendEvent(TypeRequestJoin, map[string]any{}, "")
	e := c.waitType(TypeSessionEnd, 1)
	sys := c.waitType(TypeSystemMessage, 1)
	if e.Payload["reason"] != ReasonNaturalEnd || sys.Payload["message"] != "Session history is full" {
		t.Fatalf("full history: %v %v", e.Payload, sys.Payload)
	}
}

// TestRefuseUserMessages: a refused message gets a SYSTEM_MESSAGE error
// with its metadata and no echo; the next one is taken.
func TestRefuseUserMessages(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{})
	c, sid, _ := joined(t, s, "")
	if !s.RefuseUserMessages(sid, 1, "Error: Unable to retrieve session") || s.RefuseUserMessages("nope", 1, "") {
		t.Fatal("knob result")
	}
	c.sendEvent(TypeUserMessage, map[string]any{"text": "hello"}, "r1")
	e := c.waitType(TypeSystemMessage, 1)
	if e.Payload["message"] != "Error: Unable to retrieve session" || e.custom("client_event_id") != "r1" || e.Sequence != nil {
		t.Fatalf("refusal %v %v", e.Payload, e.Metadata)
	}
	if slices.ContainsFunc(c.flat(), ofType(TypeUserMessage)) || len(s.UserMessages(sid)) != 0 {
		t.Fatal("refused message was echoed or recorded")
	}
	c.sendEvent(TypeUserMessage, map[string]any{"text": "hello"}, "r2")
	c.waitType(TypeUserMessage, 1)
	if msgs := s.UserMessages(sid); len(msgs) != 1 || msgs[0].ClientEventID != "r2" {
		t.Fatalf("recorded %+v", msgs)
	}
}
