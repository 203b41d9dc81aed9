package bandemu

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

func TestUpgradeAuth(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{})
	for _, tc := range []struct {
		name   string
		q      url.Values
		header http.Header
		status int
		code   string
	}{
		{"no vsn", url.Values{"api_key": {s.APIKey()}, "agent_id": {s.AgentID()}}, nil, 403, "forbidden"},
		{"v1", url.Values{"vsn": {"1.0.0"}, "api_key": {s.APIKey()}}, nil, 403, "forbidden"},
		{"no key", url.Values{"vsn": {"2.0.0"}, "agent_id": {s.AgentID()}}, nil, 403, "forbidden"},
		{"bad key", url.Values{"vsn": {"2.0.0"}, "api_key": {"nope"}}, nil, 403, "forbidden"},
		{"other agent", url.Values{"vsn": {"2.0.0"}, "api_key": {s.APIKey()}, "agent_id": {"someone-else"}}, nil, 403, "forbidden"},
		{"bad policy", url.Values{"vsn": {"2.0.0"}, "api_key": {s.APIKey()}, "on_conflict": {"fight"}}, nil, 400, "invalid_on_conflict"},
		{"header key", url.Values{"vsn": {"2.0.0"}, "agent_id": {s.AgentID()}}, http.Header{"X-Api-Key": {s.APIKey()}}, 101, ""},
		{"query key", agentQuery(s), nil, 101, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, resp, err := dial(t, socketURL(s, tc.q), tc.header)
			if tc.status == 101 {
				if err != nil {
					t.Fatal(err)
				}
				_ = c.ws.Close(websocket.StatusNormalClosure, "")
				return
			}
			expectRefusal(t, resp, err, tc.status, tc.code)
		})
	}

	// A plain GET with valid credentials is refused and supersedes nothing.
	holder := mustDial(t, s)
	resp, err := http.Get(s.URL() + SocketPath + "?" + agentQuery(s).Encode())
	expectRefusal(t, resp, errors.Join(err, errors.New("plain GET")), http.StatusUpgradeRequired, "upgrade_required")
	holder.sendRaw(`[null,"p1","phoenix","heartbeat",{}]`)
	holder.reply("p1")
	if s.Connections() != 1 {
		t.Fatalf("connections %d", s.Connections())
	}
}

func expectRefusal(t *testing.T, resp *http.Response, err error, status int, code string) map[string]any {
	t.Helper()
	if err == nil || resp == nil {
		t.Fatalf("upgrade succeeded or no response: %v", err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var body struct {
		Error map[string]any `json:"error"`
	}
	if resp.StatusCode != status || json.Unmarshal(raw, &body) != nil || body.Error["code"] != code {
		t.Fatalf("refusal %d %s, want %d %s", resp.StatusCode, raw, status, code)
	}
	return body.Error
}

func TestRejectUpgrades(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{})
	s.RejectUpgrades(1, http.StatusTooManyRequests, 3*time.Second)
	_, resp, err := dial(t, socketURL(s, agentQuery(s)), nil)
	e := expectRefusal(t, resp, err, 429, "too_many_requests")
	if e["retry_after"] != 3.0 || resp.Header.Get("Retry-After") != "3" {
		t.Fatalf("retry_after %v / %q", e["retry_after"], resp.Header.Get("Retry-After"))
	}
	s.RejectUpgrades(1, http.StatusServiceUnavailable, 0)
	_, resp, err = dial(t, socketURL(s, agentQuery(s)), nil)
	if e := expectRefusal(t, resp, err, 503, "tracking_failed"); e["retry_after"] != nil {
		t.Fatalf("unexpected retry_after %v", e)
	}
	mustDial(t, s)
	eventually(t, "one connection", func() bool { return s.Connections() == 1 })
	var got []int
	for _, r := range s.Requests() {
		if r.Path == SocketPath {
			got = append(got, r.Status)
		}
	}
	if len(got) != 3 || got[0] != 429 || got[1] != 503 || got[2] != 101 {
		t.Fatalf("upgrade records %v", got)
	}
}

func TestHeartbeatReply(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{})
	c := mustDial(t, s)
	c.sendRaw(`[null,"10","phoenix","heartbeat",{}]`)
	if r := c.reply("10"); r.Raw != `[null,"10","phoenix","phx_reply",{"status":"ok","response":{}}]` {
		t.Fatalf("heartbeat reply %s", r.Raw)
	}

	// Stalled: no reply to 11; resumed: 12 answered, 11 never. The join
	// in between proves the server read 11 before the knob flips back.
	s.StallHeartbeats(true)
	c.sendRaw(`[null,"11","phoenix","heartbeat",{}]`)
	c.mustJoin("agent_rooms:" + s.AgentID())
	s.StallHeartbeats(false)
	c.sendRaw(`[null,"12","phoenix","heartbeat",{}]`)
	c.reply("12")
	if c.has(func(f frame) bool { return f.Ref != nil && *f.Ref == "11" }) {
		t.Fatal("stalled heartbeat was answered")
	}
}

func TestJoinReplies(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{})
	dana := s.AddUser("Dana")
	room := s.AddRoom("r", dana.ID)
	foreign := s.AddRoomFor(s.AddAgent("Other").ID, "not mine")
	a := s.AgentID()
	c := mustDial(t, s)

	c.sendRaw(`["c1","c1","agent_control:` + a + `","phx_join",{}]`)
	if r := c.reply("c1"); r.Raw != `["c1","c1","agent_control:`+a+`","phx_reply",{"status":"ok","response":{}}]` {
		t.Fatalf("join reply %s", r.Raw)
	}
	for _, topic := range []string{"agent_rooms:" + a, "agent_contacts:" + a, "chat_room:" + room.ID, "room_participants:" + room.ID} {
		c.mustJoin(topic)
	}
	for _, topic := range []string{"agent_rooms:someone", "chat_room:" + foreign.ID, "room_participants:nope"} {
		ref, r := c.join(topic)
		if r.Raw != `["`+ref+`","`+ref+`","`+topic+`","phx_reply",{"status":"error","response":{"reason":"unauthorized"}}]` {
			t.Fatalf("join %s: %s", topic, r.Raw)
		}
	}
	c.sendRaw(`["b9","b9","bogus:1","phx_join",{}]`)
	if r := c.reply("b9"); r.Raw != `[null,"b9","bogus:1","phx_reply",{"status":"error","response":{"reason":"unmatched topic"}}]` {
		t.Fatalf("unmatched: %s", r.Raw)
	}

	// Rejoin closes the old channel first.
	topic := "chat_room:" + room.ID
	oldRef := findJoinRef(t, c, topic)
	newRef, r := c.join(topic)
	if status(r) != "ok" {
		t.Fatalf("rejoin: %s", r.Raw)
	}
	closeFrame := c.waitFrame("phx_close", func(f frame) bool { return f.Event == "phx_close" && f.Topic == topic })
	if closeFrame.Raw != `["`+oldRef+`","`+oldRef+`","`+topic+`","phx_close",{}]` {
		t.Fatalf("close of old join: %s", closeFrame.Raw)
	}

	// Leave: ok reply, then phx_close with the current join_ref.
	ref := c.nextRef()
	c.send(newRef, ref, topic, "phx_leave")
	if r := c.reply(ref); r.Raw != `["`+newRef+`","`+ref+`","`+topic+`","phx_reply",{"status":"ok","response":{}}]` {
		t.Fatalf("leave reply %s", r.Raw)
	}
	c.waitFrame("phx_close after leave", func(f frame) bool {
		return f.Event == "phx_close" && f.JoinRef != nil && *f.JoinRef == newRef
	})
	// After leaving, pushes for that room stop.
	s.PostUserMessage(room.ID, dana.ID, "after leave")
	c.sendRaw(`[null,"h99","phoenix","heartbeat",{}]`)
	c.reply("h99")
	if c.has(func(f frame) bool { return f.Event == "message_created" }) {
		t.Fatal("push after leave")
	}
}

func findJoinRef(t *testing.T, c *phxClient, topic string) string {
	t.Helper()
	f := c.waitFrame("join reply "+topic, func(f frame) bool {
		return f.Topic == topic && f.Event == "phx_reply" && status(f) == "ok"
	})
	return *f.JoinRef
}

func TestMessageCreatedPush(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{})
	dana := s.AddUser("Dana Levi")
	room := s.AddRoom("Q3 planning", dana.ID)
	c := mustDial(t, s)
	topic := "chat_room:" + room.ID
	joinRef := c.mustJoin(topic)

	s.PostUserMessageNoMention(room.ID, dana.ID, "chatter")
	m := s.PostUserMessage(room.ID, dana.ID, "@Bridge Bot summarise this thread")
	f := c.push(topic, "message_created")
	if f.JoinRef == nil || *f.JoinRef != joinRef || f.Ref != nil {
		t.Fatalf("push refs: %s", f.Raw)
	}
	p := f.Payload
	mentions, _ := p["metadata"].(map[string]any)["mentions"].([]any)
	if p["id"] != m.ID || p["content"] != m.Content || p["sender_id"] != dana.ID || p["sender_type"] != "User" ||
		p["sender_name"] != "Dana Levi" || p["message_type"] != "text" || len(mentions) != 1 ||
		mentions[0].(map[string]any)["id"] != s.AgentID() || p["inserted_at"] == nil {
		t.Fatalf("payload %s", f.Raw)
	}
	if strings.Contains(f.Raw, "chatter") {
		t.Fatal("unmentioned message pushed")
	}

	// Missed pushes: stored, not sent; ordering proves it was skipped.
	s.SetPushesEnabled(false)
	missed := s.PostUserMessage(room.ID, dana.ID, "missed")
	s.SetPushesEnabled(true)
	after := s.PostUserMessage(room.ID, dana.ID, "after")
	c.waitFrame("push of 'after'", func(f frame) bool { return f.Payload["id"] == after.ID })
	if c.has(func(f frame) bool { return f.Payload["id"] == missed.ID }) {
		t.Fatal("push sent while disabled")
	}
	if p := s.Pending(room.ID); len(p) != 3 || p[1].ID != missed.ID {
		t.Fatalf("pending %v", p)
	}

	// The agent's own REST post is not pushed back to it.
	r := api(t, s, "POST", "/api/v1/agent/chats/"+room.ID+"/messages",
		map[string]any{"message": map[string]any{"content": "ok", "mentions": []any{map[string]any{"id": dana.ID}}}})
	expectStatus(t, r, 201)
	last := s.PostUserMessage(room.ID, dana.ID, "last")
	c.waitFrame("push of 'last'", func(f frame) bool { return f.Payload["id"] == last.ID })
	if c.has(func(f frame) bool { return f.Payload["id"] == r.data()["id"] }) {
		t.Fatal("own message pushed")
	}
}

func TestRoomAndContactEvents(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{})
	a := s.AgentID()
	dana := s.AddUser("Dana")
	c := mustDial(t, s)
	c.mustJoin("agent_rooms:" + a)
	c.mustJoin("agent_contacts:" + a)

	room := s.AddRoom("fresh", dana.ID)
	added := c.push("agent_rooms:"+a, "room_added")
	if added.Payload["id"] != room.ID || added.Payload["title"] != "fresh" || added.Ref != nil {
		t.Fatalf("room_added %s", added.Raw)
	}
	c.mustJoin("room_participants:" + room.ID)
	sam := s.AddUser("Sam")
	s.AddParticipant(room.ID, sam.ID)
	if p := c.push("room_participants:"+room.ID, "participant_added"); p.Payload["id"] != sam.ID || p.Payload["type"] != "User" {
		t.Fatalf("participant_added %s", p.Raw)
	}
	s.RemoveAgentFromRoom(room.ID)
	if p := c.push("room_participants:"+room.ID, "participant_removed"); p.Payload["id"] != a || p.Payload["type"] != "Agent" {
		t.Fatalf("participant_removed %s", p.Raw)
	}
	if p := c.push("agent_rooms:"+a, "room_removed"); p.Payload["id"] != room.ID {
		t.Fatalf("room_removed %s", p.Raw)
	}
	expectError(t, api(t, s, "GET", "/api/v1/agent/chats/"+room.ID, nil), 404, "not_found")

	other := s.AddRoom("doomed")
	ref := c.mustJoin("room_participants:" + other.ID)
	s.DeleteRoom(other.ID)
	if p := c.push("room_participants:"+other.ID, "room_deleted"); p.Raw != `["`+ref+`",null,"room_participants:`+other.ID+`","room_deleted",{"id":"`+other.ID+`"}]` {
		t.Fatalf("room_deleted %s", p.Raw)
	}

	req := s.ContactRequest(dana.ID, "hi")
	if p := c.push("agent_contacts:"+a, "contact_request_received"); p.Payload["id"] != req.ID || p.Payload["from_handle"] != dana.Handle || p.Payload["status"] != "pending" {
		t.Fatalf("contact_request_received %s", p.Raw)
	}
	s.ResolveContactRequest(req.ID, "approved")
	c.push("agent_contacts:"+a, "contact_request_updated")
	if p := c.push("agent_contacts:"+a, "contact_added"); p.Payload["handle"] != dana.Handle {
		t.Fatalf("contact_added %s", p.Raw)
	}
}

func TestSupersede(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{})
	first := mustDial(t, s)
	ctlRef := first.mustJoin("agent_control:" + s.AgentID())

	second := mustDial(t, s)
	sup := first.push("agent_control:"+s.AgentID(), "supersede")
	if sup.JoinRef == nil || *sup.JoinRef != ctlRef || sup.Ref != nil ||
		sup.Payload["reason"] != "session.already_connected" || sup.Payload["retryable"] != false ||
		sup.Payload["target_socket_id"] != "agent_socket:"+s.AgentID() || sup.Payload["correlation_id"] == nil {
		t.Fatalf("supersede %s", sup.Raw)
	}
	if code := websocket.CloseStatus(first.waitClosed()); code != websocket.StatusNormalClosure {
		t.Fatalf("first closed with %v", code)
	}
	eventually(t, "one connection", func() bool { return s.Connections() == 1 })

	// The survivor works.
	second.sendRaw(`[null,"1","phoenix","heartbeat",{}]`)
	second.reply("1")

	// on_conflict=reject refuses the newcomer and keeps the holder.
	q := agentQuery(s)
	q.Set("on_conflict", "reject")
	_, resp, err := dial(t, socketURL(s, q), nil)
	expectRefusal(t, resp, err, 409, "connection_conflict")
	second.sendRaw(`[null,"2","phoenix","heartbeat",{}]`)
	second.reply("2")

	if n := s.Supersedes(); n != 1 {
		t.Fatalf("Supersedes() = %d after one supersede, want 1", n)
	}

	// Supersede knob: push and close now.
	second.mustJoin("agent_control:" + s.AgentID())
	s.Supersede()
	second.push("agent_control:"+s.AgentID(), "supersede")
	second.waitClosed()
	eventually(t, "no connection", func() bool { return s.Connections() == 0 })
	if n := s.Supersedes(); n != 2 {
		t.Fatalf("Supersedes() = %d after the knob, want 2", n)
	}
}

func TestIdleTimeout(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{HeartbeatTimeout: time.Second})
	quiet := mustDial(t, s)
	busy := dialAgent(t, s, s.AddAgent("Second"))

	// busy heartbeats every 20ms until quiet is closed: it survives.
	for i := 0; ; i++ {
		select {
		case <-quiet.done:
		default:
			ref := busy.nextRef()
			busy.send(nil, ref, "phoenix", "heartbeat")
			busy.reply(ref)
			time.Sleep(20 * time.Millisecond) // heartbeat cadence, not synchronisation
			continue
		}
		break
	}
	err := quiet.waitClosed()
	var ce websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.StatusNormalClosure || ce.Reason != "heartbeat timeout" {
		t.Fatalf("idle close: %v", err)
	}
	ref := busy.nextRef()
	busy.send(nil, ref, "phoenix", "heartbeat")
	busy.reply(ref)
}

func dialAgent(t *testing.T, s *Server, a Agent) *phxClient {
	t.Helper()
	q := url.Values{"vsn": {"2.0.0"}, "api_key": {a.APIKey}, "agent_id": {a.ID}}
	c, _, err := dial(t, socketURL(s, q), nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
