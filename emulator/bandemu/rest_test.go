package bandemu

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestRESTAuth(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{})
	expectError(t, apiWithKey(t, s, "", "GET", "/api/v1/agent/me", nil), 401, "unauthorized")
	expectError(t, apiWithKey(t, s, "wrong", "GET", "/api/v1/agent/me", nil), 401, "unauthorized")
	r := api(t, s, "GET", "/api/v1/agent/me", nil)
	expectStatus(t, r, 200)
	me := r.data()
	if me["id"] != DefaultAgentID || me["name"] != "Bridge Bot" || me["handle"] != "emulator/bridge-bot" {
		t.Fatalf("me = %v", me)
	}
	if !strings.HasPrefix(s.APIKey(), "emu-key-") {
		t.Fatalf("key %q", s.APIKey())
	}
	expectError(t, api(t, s, "GET", "/api/v1/agent/nope", nil), 404, "not_found")
}

func TestChatsPagingAndCRUD(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{AgentID: "agent-1", AgentName: "Helper"})
	for i := range 4 {
		s.AddRoom(fmt.Sprintf("room %d", i))
	}
	created := api(t, s, "POST", "/api/v1/agent/chats", map[string]any{"chat": map[string]any{"title": "Escalation"}})
	expectStatus(t, created, 201)
	id, _ := created.data()["id"].(string)

	page := api(t, s, "GET", "/api/v1/agent/chats?page=3&page_size=2", nil)
	expectStatus(t, page, 200)
	m := page.meta()
	if m["total_count"] != 5.0 || m["total_pages"] != 3.0 || m["page"] != 3.0 || len(page.list()) != 1 {
		t.Fatalf("page 3: %s", page.Raw)
	}
	if last := page.list()[0].(map[string]any); last["id"] != id || last["title"] != "Escalation" {
		t.Fatalf("last room %v", last)
	}
	expectError(t, api(t, s, "GET", "/api/v1/agent/chats?page=0", nil), 422, "validation_error")

	got := api(t, s, "GET", "/api/v1/agent/chats/"+id, nil)
	expectStatus(t, got, 200)
	patched := api(t, s, "PATCH", "/api/v1/agent/chats/"+id, map[string]any{"chat": map[string]any{"title": "Renamed"}})
	expectStatus(t, patched, 200)
	if patched.data()["title"] != "Renamed" {
		t.Fatalf("patch: %s", patched.Raw)
	}
	expectError(t, api(t, s, "PATCH", "/api/v1/agent/chats/"+id, map[string]any{"chat": map[string]any{"title": " "}}), 422, "validation_error")
	expectError(t, api(t, s, "POST", "/api/v1/agent/chats", map[string]any{"chat": map[string]any{"title": strings.Repeat("x", 121)}}), 422, "validation_error")

	// Unknown room, and a room the agent is not in, both look like 404.
	expectError(t, api(t, s, "GET", "/api/v1/agent/chats/nope", nil), 404, "not_found")
	other := s.AddAgent("Other")
	foreign := s.AddRoomFor(other.ID, "theirs")
	expectError(t, api(t, s, "GET", "/api/v1/agent/chats/"+foreign.ID+"/messages", nil), 404, "not_found")
}

func TestPostMessageMentionRules(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{})
	dana := s.AddUser("Dana Levi")
	outsider := s.AddUser("Sam Outside")
	room := s.AddRoom("Q3", dana.ID)
	path := "/api/v1/agent/chats/" + room.ID + "/messages"
	msg := func(content any, mentions ...map[string]any) map[string]any {
		m := map[string]any{"content": content}
		if mentions != nil {
			m["mentions"] = mentions
		}
		return map[string]any{"message": m}
	}
	self := s.AgentID()
	for _, tc := range []struct {
		name string
		body map[string]any
		code string
	}{
		{"blank", msg("  \u200b ", map[string]any{"id": dana.ID}), "validation_error"},
		{"no mentions", msg("hi"), "mentions_required"},
		{"empty mentions", msg("hi", []map[string]any{}...), "mentions_required"},
		{"only references", msg("hi", map[string]any{"id": dana.ID, "kind": "reference"}), "mentions_required"},
		{"self by id", msg("hi", map[string]any{"id": self}), "cannot_mention_self"},
		{"self by handle", msg("hi", map[string]any{"handle": "emulator/bridge-bot"}), "cannot_mention_self"},
		{"duplicate", msg("hi", map[string]any{"id": dana.ID}, map[string]any{"handle": dana.Handle}), "duplicate_mentions"},
		{"not in room", msg("hi", map[string]any{"id": outsider.ID}), "mentioned_participant_not_in_room"},
		{"no identifier", msg("hi", map[string]any{"name": "Dana"}), "mention_missing_identifier"},
		{"unknown handle", msg("hi", map[string]any{"handle": "nobody"}), "handle_not_found"},
		{"bad kind", msg("hi", map[string]any{"id": dana.ID, "kind": "shout"}), "invalid_mention_kind"},
		{"null kind", msg("hi", map[string]any{"id": dana.ID, "kind": nil}), "invalid_mention_kind"},
	} {
		expectError(t, api(t, s, "POST", path, tc.body), 422, tc.code)
		_ = tc.name
	}
	if n := len(s.AgentMessages(room.ID)); n != 0 {
		t.Fatalf("rejected posts stored: %d", n)
	}

	r := api(t, s, "POST", path, msg("done, see summary", map[string]any{"handle": "@" + dana.Handle}))
	expectStatus(t, r, 201)
	rec, _ := r.data()["recipients"].([]any)
	if r.data()["success"] != true || len(rec) != 1 || rec[0].(map[string]any)["id"] != dana.ID {
		t.Fatalf("post: %s", r.Raw)
	}
	sent := s.AgentMessages(room.ID)
	if len(sent) != 1 || sent[0].Content != "@Dana Levi done, see summary" || sent[0].Mentions[0].ID != dana.ID {
		t.Fatalf("stored %+v", sent)
	}
	// Already referenced: no prefix.
	expectStatus(t, api(t, s, "POST", path, msg("thanks @Dana Levi", map[string]any{"id": dana.ID})), 201)
	if got := s.AgentMessages(room.ID)[1].Content; got != "thanks @Dana Levi" {
		t.Fatalf("content %q", got)
	}
	// The agent's own text never becomes work for it.
	if p := s.Pending(room.ID); len(p) != 0 {
		t.Fatalf("pending %v", p)
	}
}

func TestProcessingStateAndNext(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{})
	dana := s.AddUser("Dana")
	room := s.AddRoom("work", dana.ID)
	base := "/api/v1/agent/chats/" + room.ID + "/messages"
	s.PostUserMessageNoMention(room.ID, dana.ID, "not for the agent")
	m1 := s.PostUserMessage(room.ID, dana.ID, "one")
	m2 := s.PostUserMessage(room.ID, dana.ID, "two")
	if !m2.InsertedAt.After(m1.InsertedAt) {
		t.Fatal("timestamps not increasing")
	}
	next := func() string {
		r := api(t, s, "GET", base+"/next", nil)
		if r.Status == 204 {
			return ""
		}
		expectStatus(t, r, 200)
		id, _ := r.data()["id"].(string)
		return id
	}
	mark := func(id, what string, body any) restResult {
		return api(t, s, "POST", base+"/"+id+"/"+what, body)
	}
	if next() != m1.ID {
		t.Fatal("next is not the oldest")
	}
	expectError(t, mark(m1.ID, "processed", nil), 422, "no_active_attempt")
	expectError(t, mark(m1.ID, "failed", map[string]any{"error": "x"}), 422, "no_active_attempt")
	r := mark(m1.ID, "processing", nil)
	expectStatus(t, r, 200)
	if d := r.data(); d["status"] != "processing" || d["attempt_number"] != 1.0 || d["success"] != true {
		t.Fatalf("processing: %s", r.Raw)
	}
	if next() != m1.ID {
		t.Fatal("processing removed the message from /next")
	}
	expectError(t, mark(m1.ID, "failed", map[string]any{"error": ""}), 422, "validation_error")
	expectError(t, mark(m1.ID, "failed", nil), 422, "validation_error")
	expectStatus(t, mark(m1.ID, "failed", map[string]any{"error": "worker timeout"}), 200)
	if next() != m1.ID {
		t.Fatal("failed message left /next")
	}
	if st, _ := s.Status(m1.ID); st != StatusFailed {
		t.Fatalf("status %q", st)
	}
	expectStatus(t, mark(m1.ID, "processing", nil), 200)
	r = mark(m1.ID, "processing", nil) // crash recovery: attempt 2 abandoned
	if r.data()["attempt_number"] != 3.0 {
		t.Fatalf("third attempt: %s", r.Raw)
	}
	expectStatus(t, mark(m1.ID, "processed", nil), 200)
	st, attempts := s.Status(m1.ID)
	if st != StatusProcessed || len(attempts) != 3 ||
		attempts[0].Status != AttemptFailed || attempts[0].Error != "worker timeout" ||
		attempts[1].Status != AttemptAbandoned || attempts[2].Status != AttemptSuccess || attempts[2].CompletedAt.IsZero() {
		t.Fatalf("status %q attempts %+v", st, attempts)
	}
	expectError(t, mark(m1.ID, "processed", nil), 422, "no_active_attempt")
	if next() != m2.ID {
		t.Fatal("next after processed")
	}

	lst := func(q string) []string {
		r := api(t, s, "GET", base+q, nil)
		expectStatus(t, r, 200)
		var ids []string
		for _, m := range r.list() {
			ids = append(ids, m.(map[string]any)["id"].(string))
		}
		return ids
	}
	if got := lst(""); len(got) != 1 || got[0] != m2.ID {
		t.Fatalf("default list %v", got)
	}
	if got := lst("?status=processed"); len(got) != 1 || got[0] != m1.ID {
		t.Fatalf("processed list %v", got)
	}
	if got := lst("?status=all"); len(got) != 2 {
		t.Fatalf("all list %v", got)
	}
	if got := lst("?status=pending"); len(got) != 1 || got[0] != m2.ID {
		t.Fatalf("pending list %v", got)
	}
	expectError(t, api(t, s, "GET", base+"?status=bogus", nil), 422, "validation_error")
	expectError(t, mark("nope", "processing", nil), 404, "not_found")

	expectStatus(t, mark(m2.ID, "processing", nil), 200)
	expectStatus(t, mark(m2.ID, "processed", nil), 200)
	if id := next(); id != "" {
		t.Fatalf("next = %s, want 204", id)
	}
	if len(s.Pending(room.ID)) != 0 {
		t.Fatal("pending not empty")
	}
}

func TestMessagesCursorPaging(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{})
	dana := s.AddUser("Dana")
	room := s.AddRoom("busy", dana.ID)
	var want []string
	for i := range 5 {
		want = append(want, s.PostUserMessage(room.ID, dana.ID, fmt.Sprint("m", i)).ID)
	}
	var got []string
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("too many pages")
		}
		q := "?limit=2"
		if cursor != "" {
			q += "&cursor=" + cursor
		}
		r := api(t, s, "GET", "/api/v1/agent/chats/"+room.ID+"/messages"+q, nil)
		expectStatus(t, r, 200)
		for _, m := range r.list() {
			mm := m.(map[string]any)
			if mm["chat_room_id"] != room.ID || mm["sender_type"] != "User" || mm["message_type"] != "text" {
				t.Fatalf("message %v", mm)
			}
			got = append(got, mm["id"].(string))
		}
		meta := r.meta()
		if meta["limit"] != 2.0 {
			t.Fatalf("meta %v", meta)
		}
		if meta["has_more"] != true {
			if meta["next_cursor"] != nil {
				t.Fatalf("next_cursor on last page: %v", meta)
			}
			break
		}
		cursor = meta["next_cursor"].(string)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("paged %v, want %v", got, want)
	}
	expectError(t, api(t, s, "GET", "/api/v1/agent/chats/"+room.ID+"/messages?limit=0", nil), 422, "validation_error")
	expectError(t, api(t, s, "GET", "/api/v1/agent/chats/"+room.ID+"/messages?cursor=zzz", nil), 422, "validation_error")
	r := api(t, s, "GET", "/api/v1/agent/chats/"+room.ID+"/messages?limit=500", nil)
	if r.meta()["limit"] != 100.0 {
		t.Fatalf("limit not capped: %v", r.meta())
	}
	legacy := api(t, s, "GET", "/api/v1/agent/chats/"+room.ID+"/messages?page=2&page_size=2", nil)
	if legacy.Header.Get("Deprecation") == "" || legacy.meta()["total_pages"] != 3.0 || len(legacy.list()) != 2 ||
		legacy.list()[0].(map[string]any)["id"] != want[2] {
		t.Fatalf("legacy paging: %s", legacy.Raw)
	}
}

func TestEvents(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{})
	room := s.AddRoom("events")
	path := "/api/v1/agent/chats/" + room.ID + "/events"
	ev := func(typ, content string, meta any) map[string]any {
		e := map[string]any{"message_type": typ, "content": content}
		if meta != nil {
			e["metadata"] = meta
		}
		return map[string]any{"event": e}
	}
	r := api(t, s, "POST", path, ev("tool_call", "Calling search",
		map[string]any{"function": map[string]any{"name": "search", "arguments": "{}"}, "id": "call_1", "type": "function"}))
	expectStatus(t, r, 201)
	if r.data()["message_type"] != "tool_call" || r.data()["success"] != true {
		t.Fatalf("event: %s", r.Raw)
	}
	expectStatus(t, api(t, s, "POST", path, ev("thought", strings.Repeat("é", maxEventContentLen), nil)), 201)
	expectStatus(t, api(t, s, "POST", path, ev("attention", "need input", map[string]any{"kind": "question"})), 201)
	for _, body := range []map[string]any{
		ev("text", "hi", nil),
		ev("system", "hi", nil),
		ev("thought", " ", nil),
		ev("thought", strings.Repeat("x", maxEventContentLen+1), nil),
		ev("attention", "need input", map[string]any{}),
		ev("error", "boom", []any{1}),
	} {
		expectError(t, api(t, s, "POST", path, body), 422, "validation_error")
	}
	evs := s.AgentEvents(room.ID)
	if len(evs) != 3 || evs[0].MessageType != "tool_call" || !strings.Contains(string(evs[0].Metadata), "call_1") {
		t.Fatalf("events %+v", evs)
	}
	if len(s.AgentMessages(room.ID)) != 0 {
		t.Fatal("events counted as text")
	}
	ctx := api(t, s, "GET", "/api/v1/agent/chats/"+room.ID+"/context?limit=2", nil)
	expectStatus(t, ctx, 200)
	if len(ctx.list()) != 2 || ctx.meta()["has_more"] != true {
		t.Fatalf("context: %s", ctx.Raw)
	}
}

func TestParticipantsPeersActivity(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{})
	dana := s.AddUser("Dana")
	sam := s.AddUser("Sam")
	room := s.AddRoom("team", dana.ID)
	base := "/api/v1/agent/chats/" + room.ID
	r := api(t, s, "GET", base+"/participants", nil)
	expectStatus(t, r, 200)
	if len(r.list()) != 2 {
		t.Fatalf("participants: %s", r.Raw)
	}
	peers := api(t, s, "GET", "/api/v1/agent/peers?not_in_chat="+room.ID, nil)
	if len(peers.list()) != 1 || peers.list()[0].(map[string]any)["id"] != sam.ID {
		t.Fatalf("peers: %s", peers.Raw)
	}
	add := api(t, s, "POST", base+"/participants", map[string]any{"participant": map[string]any{"participant_id": sam.ID, "role": "member"}})
	expectStatus(t, add, 201)
	if d := add.data(); d["id"] != sam.ID || d["type"] != "User" || d["role"] != "member" {
		t.Fatalf("add: %s", add.Raw)
	}
	expectError(t, api(t, s, "POST", base+"/participants", map[string]any{"participant": map[string]any{"participant_id": sam.ID}}), 422, "already_participant")
	expectError(t, api(t, s, "POST", base+"/participants", map[string]any{"participant": map[string]any{"participant_id": sam.ID, "role": "king"}}), 422, "validation_error")
	expectError(t, api(t, s, "POST", base+"/participants", map[string]any{"participant": map[string]any{"participant_id": "ghost"}}), 404, "not_found")
	expectStatus(t, api(t, s, "DELETE", base+"/participants/"+sam.ID, nil), 200)
	expectError(t, api(t, s, "DELETE", base+"/participants/"+sam.ID, nil), 404, "not_found")

	act := api(t, s, "POST", base+"/activity", map[string]any{"working": true})
	expectStatus(t, act, 200)
	if !s.Working(room.ID) {
		t.Fatal("activity not recorded")
	}
	expectError(t, api(t, s, "POST", base+"/activity", map[string]any{}), 422, "validation_error")
}

func TestContacts(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{})
	sam := s.AddUser("Sam K")
	kim := s.AddUser("Kim")
	req := s.ContactRequest(sam.ID, "hello")
	r := api(t, s, "GET", "/api/v1/agent/contacts/requests", nil)
	expectStatus(t, r, 200)
	recv, _ := r.data()["received"].([]any)
	if len(recv) != 1 || recv[0].(map[string]any)["from_handle"] != sam.Handle || recv[0].(map[string]any)["id"] != req.ID {
		t.Fatalf("requests: %s", r.Raw)
	}
	resp := api(t, s, "POST", "/api/v1/agent/contacts/requests/respond", map[string]any{"action": "approve", "handle": sam.Handle})
	expectStatus(t, resp, 200)
	if resp.data()["status"] != "approved" {
		t.Fatalf("respond: %s", resp.Raw)
	}
	expectError(t, api(t, s, "POST", "/api/v1/agent/contacts/requests/respond", map[string]any{"action": "approve", "request_id": req.ID}), 409, "already_resolved")
	cs := api(t, s, "GET", "/api/v1/agent/contacts", nil)
	if len(cs.list()) != 1 || cs.list()[0].(map[string]any)["handle"] != sam.Handle {
		t.Fatalf("contacts: %s", cs.Raw)
	}
	add := api(t, s, "POST", "/api/v1/agent/contacts/add", map[string]any{"handle": kim.Handle})
	expectStatus(t, add, 201)
	if add.data()["status"] != "pending" {
		t.Fatalf("add: %s", add.Raw)
	}
	expectError(t, api(t, s, "POST", "/api/v1/agent/contacts/add", map[string]any{"handle": kim.Handle}), 409, "request_pending")
	expectError(t, api(t, s, "POST", "/api/v1/agent/contacts/add", map[string]any{"handle": "nobody"}), 404, "handle_not_found")
	sent := api(t, s, "GET", "/api/v1/agent/contacts/requests", nil)
	if snt, _ := sent.data()["sent"].([]any); len(snt) != 1 {
		t.Fatalf("sent: %s", sent.Raw)
	}
	expectStatus(t, api(t, s, "POST", "/api/v1/agent/contacts/remove", map[string]any{"handle": sam.Handle}), 200)
	expectError(t, api(t, s, "POST", "/api/v1/agent/contacts/remove", map[string]any{"handle": sam.Handle}), 404, "not_found")
	if len(s.Contacts()) != 0 {
		t.Fatal("contact not removed")
	}
}

func TestFailRESTAndRequests(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{})
	s.FailREST(2, http.StatusTooManyRequests, 1500*time.Millisecond)
	for range 2 {
		r := api(t, s, "GET", "/api/v1/agent/me", nil)
		expectError(t, r, 429, "too_many_requests")
		if r.Header.Get("Retry-After") != "2" {
			t.Fatalf("Retry-After %q", r.Header.Get("Retry-After"))
		}
	}
	expectStatus(t, api(t, s, "GET", "/api/v1/agent/me", nil), 200)
	s.FailREST(1, http.StatusServiceUnavailable, 0)
	r := api(t, s, "GET", "/api/v1/agent/me", nil)
	expectError(t, r, 503, "service_unavailable")
	if r.Header.Get("Retry-After") != "" {
		t.Fatal("unexpected Retry-After")
	}
	var statuses []int
	for _, rec := range s.Requests() {
		if rec.Path != "/api/v1/agent/me" || rec.Method != "GET" || rec.Time.IsZero() {
			t.Fatalf("record %+v", rec)
		}
		statuses = append(statuses, rec.Status)
	}
	if fmt.Sprint(statuses) != "[429 429 200 503]" {
		t.Fatalf("statuses %v", statuses)
	}

	s.SetRESTDelay(50 * time.Millisecond)
	start := time.Now()
	expectStatus(t, api(t, s, "GET", "/api/v1/agent/me", nil), 200)
	if time.Since(start) < 50*time.Millisecond {
		t.Fatal("delay not applied")
	}
}
