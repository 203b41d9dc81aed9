package chatapiemu

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"
)

// Conversations, inbox and mark-read: only their routes are known
// (chatapi.md §6, unverified); every shape here is a choice listed in
// doc.go and can be turned off or reshaped through Options.

const maxConversations = 1000

func (a *agentState) conversation(id string) *Conversation {
	for _, cv := range a.conversations {
		if cv.ID == id {
			return cv
		}
	}
	return nil
}

func (s *Server) conversationJSONLocked(a *agentState, cv *Conversation) map[string]any {
	n := 0
	for _, t := range a.history {
		if t.ConversationID == cv.ID {
			n++
		}
	}
	f := s.opts.TimeFormat
	return map[string]any{"id": cv.ID, "title": cv.Title, "created_at": cv.CreatedAt.Format(f),
		"updated_at": cv.UpdatedAt.Format(f), "message_count": n}
}

// agentOp runs f under the lock with the {id} agent (404 when unknown)
// and writes its answer after unlocking.
func (s *Server) agentOp(c *call, f func(a *agentState) (int, any)) {
	s.mu.Lock()
	status, body := http.StatusNotFound, any(detail("Agent not found"))
	if a := s.agents[c.id]; a != nil {
		status, body = f(a)
	}
	s.mu.Unlock()
	writeJSON(c.w, status, body)
}

func (s *Server) listConversations(c *call) {
	s.agentOp(c, func(a *agentState) (int, any) {
		out := make([]map[string]any, 0, len(a.conversations))
		for _, cv := range a.conversations {
			out = append(out, s.conversationJSONLocked(a, cv))
		}
		return http.StatusOK, map[string]any{"conversations": out}
	})
}

// createConversation answers POST .../conversations {title?}.
func (s *Server) createConversation(c *call) {
	obj, ok := c.object(true)
	if !ok {
		return
	}
	title, _, fe := str(obj, "title", false)
	if fe != nil {
		c.invalid(*fe)
		return
	}
	if title == "" {
		title = "New conversation"
	}
	s.agentOp(c, func(a *agentState) (int, any) {
		if len(a.conversations) >= maxConversations {
			return http.StatusBadRequest, detail("Too many conversations")
		}
		now := time.Now().UTC()
		cv := &Conversation{ID: newID(), AgentID: a.ID, Title: title, CreatedAt: now, UpdatedAt: now}
		a.conversations = append(a.conversations, cv)
		return http.StatusOK, s.conversationJSONLocked(a, cv)
	})
}

// renameConversation answers PUT .../conversations/:conv_id {title}.
func (s *Server) renameConversation(c *call) {
	obj, ok := c.object(false)
	if !ok {
		return
	}
	title, fe := requiredStr(obj, "title")
	if fe != nil {
		c.invalid(*fe)
		return
	}
	s.agentOp(c, func(a *agentState) (int, any) {
		cv := a.conversation(c.r.PathValue("conv_id"))
		if cv == nil {
			return http.StatusNotFound, detail("Conversation not found")
		}
		cv.Title, cv.UpdatedAt = title, time.Now().UTC()
		return http.StatusOK, s.conversationJSONLocked(a, cv)
	})
}

// deleteConversation answers DELETE .../conversations/:conv_id: the
// conversation and its turns go.
func (s *Server) deleteConversation(c *call) {
	s.agentOp(c, func(a *agentState) (int, any) {
		id := c.r.PathValue("conv_id")
		i := slices.IndexFunc(a.conversations, func(cv *Conversation) bool { return cv.ID == id })
		if i < 0 {
			return http.StatusNotFound, detail("Conversation not found")
		}
		a.conversations = slices.Delete(a.conversations, i, i+1)
		a.history = slices.DeleteFunc(a.history, func(t Turn) bool { return t.ConversationID == id })
		return http.StatusOK, map[string]any{"id": id, "deleted": true}
	})
}

// inbox answers GET /agents/:id/inbox: the unread items, oldest first.
func (s *Server) inbox(c *call) {
	s.agentOp(c, func(a *agentState) (int, any) {
		out := make([]any, 0, len(a.inbox))
		for _, it := range a.inbox {
			if !it.Read() {
				out = append(out, s.opts.InboxItemJSON(*it))
			}
		}
		return http.StatusOK, map[string]any{s.opts.InboxListKey: out}
	})
}

// markRead answers POST /agents/:id/mark-read with the bodies
// Options.MarkRead accepts. Unknown or already read ids are ignored.
func (s *Server) markRead(c *call) {
	obj, ok := c.object(true)
	if !ok {
		return
	}
	mode := s.opts.MarkRead
	var ids []string
	_, hasIDs := obj["message_ids"]
	_, hasID := obj["message_id"]
	switch {
	case mode == MarkReadIDs && !hasIDs:
		c.invalid(fieldError{Type: "missing", Loc: []any{"body", "message_ids"}, Msg: "Field required", Input: obj})
		return
	case mode == MarkReadID && !hasID:
		c.invalid(fieldError{Type: "missing", Loc: []any{"body", "message_id"}, Msg: "Field required", Input: obj})
		return
	case mode == MarkReadAll && (hasID || hasIDs):
		c.invalid(fieldError{Type: "extra_forbidden", Loc: []any{"body"}, Msg: "Extra inputs are not permitted", Input: obj})
		return
	}
	if hasIDs && mode != MarkReadID {
		if err := json.Unmarshal(obj["message_ids"], &ids); err != nil {
			c.invalid(fieldError{Type: "list_type", Loc: []any{"body", "message_ids"}, Msg: "Input should be a valid list of strings", Input: obj["message_ids"]})
			return
		}
	}
	if hasID && mode != MarkReadIDs {
		id, _, fe := str(obj, "message_id", true)
		if fe != nil {
			c.invalid(*fe)
			return
		}
		ids = append(ids, id)
	}
	all := !hasID && !hasIDs
	s.agentOp(c, func(a *agentState) (int, any) {
		now := time.Now().UTC()
		call := MarkReadCall{AgentID: a.ID, All: all, At: now}
		if !all {
			call.IDs = slices.Clone(ids)
		}
		for _, it := range a.inbox {
			if all && !it.Read() || slices.Contains(ids, it.ID) {
				it.ReadCount++
				if !it.Read() {
					it.ReadAt = now
					call.Marked = append(call.Marked, it.ID)
				}
			}
		}
		if len(s.markReads) >= s.opts.MaxRequestLog {
			s.markReads = slices.Delete(s.markReads, 0, len(s.markReads)/2)
		}
		s.markReads = append(s.markReads, call)
		return http.StatusOK, map[string]any{"success": true, "marked": len(call.Marked)}
	})
}

// ErrInboxFull is returned by [Server.AddInboxItem] when an inbox holds
// Options.MaxInbox unread items.
var ErrInboxFull = errors.New("chatapiemu: inbox full of unread items")

func (s *Server) addInboxItemLocked(a *agentState, it InboxItem) (InboxItem, error) {
	if it.ID == "" {
		it.ID = newID()
	}
	for _, old := range a.inbox {
		if old.ID == it.ID {
			return InboxItem{}, fmt.Errorf("chatapiemu: inbox item %q already exists", it.ID)
		}
	}
	if len(a.inbox) >= s.opts.MaxInbox {
		i := slices.IndexFunc(a.inbox, func(old *InboxItem) bool { return old.Read() })
		if i < 0 {
			return InboxItem{}, ErrInboxFull
		}
		a.inbox = slices.Delete(a.inbox, i, i+1)
	}
	if it.Type == "" {
		it.Type = "message"
	}
	if it.CreatedAt.IsZero() {
		it.CreatedAt = time.Now().UTC()
	}
	it.AgentID, it.ReadAt, it.ReadCount = a.ID, time.Time{}, 0
	a.inbox = append(a.inbox, &it)
	return it, nil
}
