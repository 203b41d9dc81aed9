package polyaiemu

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

func TestHandshakeRejections(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{MaxSocketsPerSession: 2})
	sid, tok := newSession(t, s, "")
	other, otherTok := newSession(t, s, "")
	refusal(t, socketURL(s, "", tok, ""), 400, "invalid connection parameters")
	refusal(t, socketURL(s, sid, "", ""), 400, "invalid connection parameters")
	refusal(t, socketURL(s, "no-such-session", tok, ""), 404, "session not found")
	refusal(t, socketURL(s, sid, otherTok, ""), 401, "authentication failed") // another session's token
	refusal(t, socketURL(s, sid, "garbage", ""), 401, "authentication failed")
	mustDial(t, s, sid, tok, "")
	mustDial(t, s, sid, tok, "")
	refusal(t, socketURL(s, sid, tok, ""), 429, "connection limit exceeded for session")
	mustDial(t, s, other, otherTok, "") // the limit is per session

	// A plain GET takes no socket slot.
	resp, err := http.Get(s.URL() + SocketPath + "?session_id=" + other + "&access_token=" + otherTok)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUpgradeRequired {
		t.Fatalf("plain GET: %d", resp.StatusCode)
	}

	// Tokens expire: by a test, and by their TTL.
	s.ExpireToken(otherTok)
	refusal(t, socketURL(s, other, otherTok, ""), 401, "authentication failed")

	info, _ := s.Session(sid)
	if info.Handshakes != 6 || info.Connects != 2 || info.Sockets != 2 {
		t.Fatalf("session counts %+v", info)
	}
	var statuses []int
	for _, h := range s.Handshakes() {
		if h.SessionID == sid {
			statuses = append(statuses, h.Status)
		}
	}
	if !slices.Equal(statuses, []int{400, 401, 401, 101, 101, 429}) {
		t.Fatalf("handshake records %v", statuses)
	}
}

func TestTokenTTL(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{TokenTTL: 50 * time.Millisecond})
	sid, tok := newSession(t, s, "")
	eventually(t, "token expiry", func() bool {
		_, resp, err := dial(t, socketURL(s, sid, tok, ""))
		if err == nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 401
	})
}

func TestReplayAndCursor(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{MaxBatchEvents: 3})
	c, sid, tok := joined(t, s, "")
	c.sendEvent(TypeUserMessage, map[string]any{"text": "hello"}, "m1")
	c.waitN("reply", 2, ofType(TypeAgentMessage))

	// Journaled: START 1, join echo 2, JOINED 3, greeting 4, echo 5,
	// reply 6. THINKING is transient and never replayed.
	live := c.flat()
	for _, e := range live {
		if (e.Type == TypeAgentThinking) != (e.Sequence == nil) {
			t.Fatalf("%s has sequence %v", e.Type, e.Sequence)
		}
	}
	want := []string{"SESSION_START", "REQUEST_POLY_AGENT_JOIN", "POLY_AGENT_JOINED", "POLY_AGENT_MESSAGE",
		"USER_MESSAGE", "POLY_AGENT_MESSAGE"}
	for _, tc := range []struct {
		cursor string
		want   []string
	}{
		{"", want},
		{"0", want},
		{"4", []string{"SESSION_START", "USER_MESSAGE", "POLY_AGENT_MESSAGE"}},
		{"seq:5", []string{"SESSION_START", "POLY_AGENT_MESSAGE"}},
		{"6", []string{"SESSION_START"}},
		{"garbage", want},
		{"-3", want},
	} {
		r := mustDial(t, s, sid, tok, tc.cursor)
		got := r.waitN("replay", len(tc.want), func(wireEvent) bool { return true })
		if !slices.Equal(typesOf(got), tc.want) {
			t.Fatalf("cursor %q: replay %v, want %v", tc.cursor, typesOf(got), tc.want)
		}
		// Batches of at most 3, SESSION_START first in the first one,
		// each a transient EVENT_BATCH, inner events in the oneof shape.
		frames := r.frames()
		for i, f := range frames {
			if f.Type != TypeEventBatch || f.Sequence != nil || len(f.Batch) > 3 || len(f.Batch) == 0 {
				t.Fatalf("cursor %q: frame %d is %s with %d events", tc.cursor, i, f.Type, len(f.Batch))
			}
		}
		if frames[0].Batch[0].Type != TypeSessionStart {
			t.Fatalf("first batch starts with %s", frames[0].Batch[0].Type)
		}
		for _, e := range got {
			key := strings.ToLower(strings.TrimPrefix(e.Type, "EVENT_TYPE_"))
			if e.Keys["payload"] != nil || e.Keys[key] == nil || e.ID == "" || e.Keys["timestamp"] == nil {
				t.Fatalf("batch event not in the oneof shape: %v", e.Keys)
			}
		}
		if e := got[len(got)-1]; e.ID != live[len(live)-1].ID && tc.cursor != "6" {
			t.Fatalf("replayed event id %s, live %s", e.ID, live[len(live)-1].ID)
		}
		_ = r.ws.Close(websocket.StatusNormalClosure, "")
	}
	// The echo in the replay keeps metadata.custom.
	for _, e := range c.flat() {
		if e.Type == TypeUserMessage && e.custom("client_event_id") != "m1" {
			t.Fatalf("echo metadata %v", e.Metadata)
		}
	}
}

func TestPlainBatchAndStrictCursor(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{PlainBatchEvents: true, StrictCursor: true})
	sid, tok := newSession(t, s, "")
	refusal(t, socketURL(s, sid, tok, "yesterday"), 400, `invalid cursor: "yesterday"`)
	c := mustDial(t, s, sid, tok, "seq:0")
	e := c.waitType(TypeSessionStart, 1)
	if e.Keys["payload"] == nil || e.Keys["session_start"] != nil {
		t.Fatalf("plain batch event %v", e.Keys)
	}
}

func TestJoinAndReply(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{AgentName: "Ava"})
	c, sid, _ := joined(t, s, "")
	got := c.flat()
	if want := []string{"SESSION_START", "REQUEST_POLY_AGENT_JOIN", "POLY_AGENT_JOINED", "POLY_AGENT_THINKING",
		"POLY_AGENT_MESSAGE"}; !slices.Equal(typesOf(got), want) {
		t.Fatalf("join flow %v", typesOf(got))
	}
	if got[1].custom("client_event_id") != "join-1" || got[2].Payload["agent_name"] != "Ava" ||
		got[4].Payload["text"] != "Hi, I'm Ava. How can I help you today?" {
		t.Fatalf("join events %v / %v / %v", got[1].Metadata, got[2].Payload, got[4].Payload)
	}
	if got[2].Keys["metadata"] != nil {
		t.Fatal("metadata on an event the client did not send")
	}

	c.sendEvent(TypeUserMessage, map[string]any{"text": "where is my order?"}, "m1")
	all := c.waitN("reply", 2, ofType(TypeAgentMessage))
	echo, reply := all[5], all[7]
	if echo.Type != TypeUserMessage || echo.Payload["text"] != "where is my order?" || echo.Payload["message_id"] == "" ||
		echo.custom("client_event_id") != "m1" || all[6].Type != TypeAgentThinking ||
		reply.Payload["text"] != "You said: where is my order?" {
		t.Fatalf("message flow %s: %v %v", types(all), echo.Payload, reply.Payload)
	}
	msgs := s.UserMessages(sid)
	if len(msgs) != 1 || msgs[0].ClientEventID != "m1" || msgs[0].MessageID != echo.Payload["message_id"] || msgs[0].To != AgentPolyAI {
		t.Fatalf("recorded %+v", msgs)
	}

	// A second join is echoed and changes nothing.
	c.sendEvent(TypeRequestJoin, map[string]any{}, "join-2")
	c.waitN("second join echo", 2, ofType(TypeRequestJoin))

	// Heartbeats are echoed, transient; typing is recorded, not echoed.
	c.sendEvent(TypeUserTyping, map[string]any{"state": "TYPING_STATE_STARTED"}, "")
	c.sendEvent(TypeHeartbeat, map[string]any{}, "hb1")
	hb := c.waitType(TypeHeartbeat, 1)
	if hb.Sequence != nil || hb.custom("client_event_id") != "hb1" {
		t.Fatalf("heartbeat echo %v %v", hb.Sequence, hb.Metadata)
	}
	// The heartbeat was sent after the typing, so an echo would be here.
	if slices.ContainsFunc(c.flat(), func(e wireEvent) bool { return e.Type == TypeUserTyping }) {
		t.Fatal("typing was echoed")
	}
	if ty := s.Typing(sid); !slices.Equal(ty, []string{"TYPING_STATE_STARTED"}) {
		t.Fatalf("typing %v", ty)
	}
	if n := len(c.flat()); n != 10 {
		t.Fatalf("%d events: %s", n, types(c.flat()))
	}
}

func TestInvalidEvents(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{})
	sid, tok := newSession(t, s, "")
	c := mustDial(t, s, sid, tok, "")
	cases := []struct{ frame, message string }{
		{`not json`, errInvalidEvent},
		{`{"type":"EVENT_TYPE_HEARTBEAT"}`, errInvalidEvent},
		{`{"type":"EVENT_TYPE_HEARTBEAT","payload":[]}`, errInvalidEvent},
		{`{"type":"EVENT_TYPE_HEARTBEAT","payload":{},"metadata":{"custom":"x"}}`, errInvalidEvent},
		{`{"type":"EVENT_TYPE_NOPE","payload":{}}`, errInvalidEvent},
		{`{"type":"EVENT_TYPE_POLY_AGENT_MESSAGE","payload":{"text":"x"}}`, "Event type not allowed: EVENT_TYPE_POLY_AGENT_MESSAGE"},
		{`{"type":"EVENT_TYPE_REQUEST_POLY_AGENT_JOIN_WITH_GREETING_MESSAGE","payload":{}}`, "Event type not allowed: EVENT_TYPE_REQUEST_POLY_AGENT_JOIN_WITH_GREETING_MESSAGE"},
		{`{"type":"EVENT_TYPE_REQUEST_POLY_AGENT_JOIN","payload":{"greeting":"hi"}}`, errInvalidEvent},
		{`{"type":"EVENT_TYPE_USER_MESSAGE","payload":{}}`, errInvalidEvent},
		{`{"type":"EVENT_TYPE_USER_TYPING","payload":{"state":"MAYBE"}}`, errInvalidEvent},
		{`{"type":"EVENT_TYPE_USER_MESSAGE","payload":{"text":"too early"},"metadata":{"custom":{"client_event_id":"e1"}}}`, errNoConversation},
	}
	for i, tc := range cases {
		c.send(tc.frame)
		e := c.waitType(TypeSystemMessage, i+1)
		if e.Payload["level"] != LevelError || e.Payload["message"] != tc.message || e.Sequence != nil {
			t.Fatalf("%s: got %v", tc.frame, e.Payload)
		}
	}
	last := c.waitType(TypeSystemMessage, len(cases))
	if last.custom("client_event_id") != "e1" {
		t.Fatalf("error without the client's metadata: %v", last.Metadata)
	}
	if len(s.UserMessages(sid)) != 0 {
		t.Fatal("a refused message was recorded")
	}
	// The socket stays open and the session usable.
	c.sendEvent(TypeRequestJoin, map[string]any{}, "")
	c.waitType(TypeAgentJoined, 1)
}

func TestSocketsOfOneSession(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{})
	a, sid, tok := joined(t, s, "")
	b := mustDial(t, s, sid, tok, "4")
	b.waitType(TypeSessionStart, 1)
	a.sendEvent(TypeUserMessage, map[string]any{"text": "hi"}, "m1")
	a.sendEvent(TypeHeartbeat, map[string]any{}, "")
	a.waitType(TypeHeartbeat, 1)
	b.waitN("reply on the other socket", 1, ofType(TypeAgentMessage))
	b.waitType(TypeUserMessage, 1)
	if slices.ContainsFunc(b.flat(), func(e wireEvent) bool { return e.Type == TypeHeartbeat }) {
		t.Fatal("heartbeat echo went to the other socket")
	}
}

func TestOversizeAndBinaryFrames(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{MaxMessageSize: 1024})
	sid, tok := newSession(t, s, "")
	c := mustDial(t, s, sid, tok, "")
	c.waitType(TypeSessionStart, 1)
	c.send(`{"type":"EVENT_TYPE_USER_MESSAGE","payload":{"text":"` + strings.Repeat("x", 2000) + `"}}`)
	if code := websocket.CloseStatus(c.waitClosed()); code != websocket.StatusMessageTooBig {
		t.Fatalf("oversize frame: close %v", code)
	}
	d := mustDial(t, s, sid, tok, "")
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := d.ws.Write(ctx, websocket.MessageBinary, []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if code := websocket.CloseStatus(d.waitClosed()); code != websocket.StatusUnsupportedData {
		t.Fatalf("binary frame: close %v", code)
	}
	eventually(t, "sockets forgotten", func() bool { return s.Connections() == 0 })
}

func TestCloseStopsEverything(t *testing.T) {
	t.Parallel()
	s := New(Options{IdleTimeout: time.Hour})
	if _, err := s.Start(); err != nil {
		t.Fatal(err)
	}
	sid, tok := newSession(t, s, "")
	c := mustDial(t, s, sid, tok, "")
	c.waitType(TypeSessionStart, 1)
	done := make(chan struct{})
	go func() {
		s.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(waitFor):
		t.Fatal("Close did not return")
	}
	if code := websocket.CloseStatus(c.waitClosed()); code != websocket.StatusGoingAway {
		t.Fatalf("close code %v", code)
	}
	s.Close() // idempotent
	if _, err := s.Start(); err == nil {
		t.Fatal("Start after Close succeeded")
	}
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, AccessTokenPath, nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("REST after Close: %d", rec.Code)
	}
}
