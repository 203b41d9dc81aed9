package chatapiemu

import (
	"net/http"
	"slices"
	"testing"
	"time"
)

func TestInboxAndMarkRead(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{})
	id := s.AgentID()
	a, err := s.AddInboxItem(id, InboxItem{ID: "rem-1", Content: "Stand-up in 5 minutes", Type: "reminder"})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := s.AddInboxItem(id, InboxItem{Content: "second"})
	c, _ := s.AddInboxItem(id, InboxItem{Content: "third"})
	if _, err := s.AddInboxItem(id, InboxItem{ID: "rem-1"}); err == nil {
		t.Fatal("duplicate id accepted")
	}
	if b.ID == "" || b.Type != "message" || b.CreatedAt.IsZero() {
		t.Fatalf("defaults %+v", b)
	}
	unread := func() []string {
		r := do(t, s, "GET", "/agents/"+id+"/inbox", s.opts.AgentKey, nil)
		if r.status != http.StatusOK {
			t.Fatalf("inbox: %d %s", r.status, r.body)
		}
		var ids []string
		for _, it := range r.json(t)["messages"].([]any) {
			m := it.(map[string]any)
			if m["content"] == "" || m["created_at"] == "" || m["role"] != "assistant" {
				t.Fatalf("item %v", m)
			}
			ids = append(ids, m["id"].(string))
		}
		return ids
	}
	if got := unread(); !slices.Equal(got, []string{a.ID, b.ID, c.ID}) {
		t.Fatalf("unread %v", got)
	}
	if got := unread(); !slices.Equal(got, []string{a.ID, b.ID, c.ID}) {
		t.Fatalf("ids not stable: %v", got)
	}
	mark := func(body any) response { return do(t, s, "POST", "/agents/"+id+"/mark-read", s.APIKey(), body) }
	before := time.Now()
	if r := mark(map[string]any{"message_ids": []string{a.ID, "unknown"}}); r.status != 200 || r.json(t)["marked"] != 1.0 {
		t.Fatalf("mark ids: %d %s", r.status, r.body)
	}
	if r := mark(map[string]any{"message_id": a.ID}); r.status != 200 || r.json(t)["marked"] != 0.0 {
		t.Fatalf("mark again: %d %s", r.status, r.body)
	}
	if got := unread(); !slices.Equal(got, []string{b.ID, c.ID}) {
		t.Fatalf("unread after mark %v", got)
	}
	if r := mark(nil); r.status != 200 || r.json(t)["marked"] != 2.0 {
		t.Fatalf("mark all: %d %s", r.status, r.body)
	}
	if got := unread(); len(got) != 0 {
		t.Fatalf("unread after mark all %v", got)
	}
	items := s.InboxItems(id)
	if len(items) != 3 || !items[0].Read() || items[0].ReadAt.Before(before) || items[0].ReadCount != 2 || items[1].ReadCount != 1 {
		t.Fatalf("items %+v", items)
	}
	calls := s.MarkReadCalls()
	if len(calls) != 3 || !slices.Equal(calls[0].IDs, []string{a.ID, "unknown"}) || !slices.Equal(calls[0].Marked, []string{a.ID}) ||
		len(calls[1].Marked) != 0 || !calls[2].All || !slices.Equal(calls[2].Marked, []string{b.ID, c.ID}) {
		t.Fatalf("calls %+v", calls)
	}
	if r := mark(map[string]any{"message_ids": "x"}); r.status != http.StatusUnprocessableEntity {
		t.Fatalf("bad ids: %d", r.status)
	}
	if r := do(t, s, "GET", "/agents/nope/inbox", s.APIKey(), nil); r.status != 404 {
		t.Fatalf("unknown agent: %d", r.status)
	}
}

func TestInboxOptions(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		mode     MarkReadMode
		accepted []int // of: ids, id, empty
	}{
		{MarkReadIDs, []int{200, 422, 422}},
		{MarkReadID, []int{422, 200, 422}},
		{MarkReadAll, []int{422, 422, 200}},
	} {
		s := newServer(t, Options{MarkRead: tc.mode, InboxListKey: "items",
			InboxItemJSON: func(it InboxItem) any { return map[string]any{"message_id": it.ID, "text": it.Content} }})
		it, _ := s.AddInboxItem(s.AgentID(), InboxItem{Content: "hello"})
		r := do(t, s, "GET", "/agents/"+s.AgentID()+"/inbox", s.APIKey(), nil)
		items := r.json(t)["items"].([]any)
		if len(items) != 1 || items[0].(map[string]any)["message_id"] != it.ID || items[0].(map[string]any)["text"] != "hello" {
			t.Fatalf("mode %d: inbox %s", tc.mode, r.body)
		}
		for i, body := range []any{map[string]any{"message_ids": []string{it.ID}}, map[string]any{"message_id": it.ID}, nil} {
			r := do(t, s, "POST", "/agents/"+s.AgentID()+"/mark-read", s.APIKey(), body)
			if r.status != tc.accepted[i] {
				t.Fatalf("mode %d body %d: %d %s", tc.mode, i, r.status, r.body)
			}
		}
	}
	s := newServer(t, Options{DisableInbox: true, DisableConversations: true})
	for _, p := range []string{"/inbox", "/conversations"} {
		if r := do(t, s, "GET", "/agents/"+s.AgentID()+p, s.APIKey(), nil); r.status != 404 || r.detail(t) != "Not Found" {
			t.Fatalf("disabled %s: %d", p, r.status)
		}
	}
	small := newServer(t, Options{MaxInbox: 1})
	first, _ := small.AddInboxItem(small.AgentID(), InboxItem{Content: "1"})
	if _, err := small.AddInboxItem(small.AgentID(), InboxItem{Content: "2"}); err != ErrInboxFull {
		t.Fatalf("full inbox: %v", err)
	}
	do(t, small, "POST", "/agents/"+small.AgentID()+"/mark-read", small.APIKey(), map[string]any{"message_id": first.ID})
	if _, err := small.AddInboxItem(small.AgentID(), InboxItem{Content: "2"}); err != nil {
		t.Fatalf("a read item should make room: %v", err)
	}
}

func TestConversations(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{})
	base := "/agents/" + s.AgentID() + "/conversations"
	key := s.opts.AgentKey
	r := do(t, s, "POST", base, key, map[string]any{"title": "Trip"})
	if r.status != 200 || r.json(t)["title"] != "Trip" {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	conv := r.json(t)["id"].(string)
	if r := do(t, s, "POST", base, key, nil); r.status != 200 || r.json(t)["title"] != "New conversation" {
		t.Fatalf("create untitled: %d %s", r.status, r.body)
	}
	if r := do(t, s, "PUT", base+"/"+conv, key, map[string]any{"title": "Trip to Oslo"}); r.status != 200 || r.json(t)["title"] != "Trip to Oslo" {
		t.Fatalf("rename: %d %s", r.status, r.body)
	}
	if r := do(t, s, "PUT", base+"/"+conv, key, map[string]any{}); r.status != 422 {
		t.Fatalf("rename without title: %d", r.status)
	}
	chat := "/agents/" + s.AgentID() + "/chat"
	do(t, s, "POST", chat, key, map[string]any{"message": "outside"})
	do(t, s, "POST", chat, key, map[string]any{"message": "inside", "conversation_id": conv})
	if r := do(t, s, "POST", chat, key, map[string]any{"message": "x", "conversation_id": "nope"}); r.status != 404 || r.detail(t) != "Conversation not found" {
		t.Fatalf("unknown conversation: %d %s", r.status, r.body)
	}
	h := do(t, s, "GET", "/agents/"+s.AgentID()+"/history?conversation_id="+conv, key, nil).json(t)["messages"].([]any)
	if len(h) != 2 || h[0].(map[string]any)["content"] != "inside" {
		t.Fatalf("filtered history %v", h)
	}
	list := do(t, s, "GET", base, key, nil).json(t)["conversations"].([]any)
	if len(list) != 2 || list[0].(map[string]any)["message_count"] != 2.0 {
		t.Fatalf("list %v", list)
	}
	if r := do(t, s, "DELETE", base+"/"+conv, key, nil); r.status != 200 {
		t.Fatalf("delete: %d", r.status)
	}
	if r := do(t, s, "DELETE", base+"/"+conv, key, nil); r.status != 404 {
		t.Fatalf("delete again: %d", r.status)
	}
	if h := s.History(s.AgentID()); len(h) != 2 || h[0].Content != "outside" {
		t.Fatalf("history after delete %+v", h)
	}
	if len(s.Conversations(s.AgentID())) != 1 {
		t.Fatal("conversation not deleted")
	}
}
