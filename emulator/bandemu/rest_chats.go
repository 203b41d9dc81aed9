package bandemu

import (
	"cmp"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Identity, peers, chats, participants, context and activity.

func (s *Server) getMe(c *call) {
	s.locked(c, func() reply { return ok(http.StatusOK, s.agentMeJSON(s.agents[c.agentID])) })
}

func (s *Server) listPeers(c *call) {
	page, size, bad := c.pageParams(s.opts.ChatsPageSize)
	if bad != nil {
		c.send(*bad)
		return
	}
	notIn := c.r.URL.Query().Get("not_in_chat")
	s.locked(c, func() reply {
		var exclude *roomState
		if notIn != "" {
			if exclude = s.agentRoomLocked(notIn, c.agentID); exclude == nil {
				return notFound("chat room")
			}
		}
		var ids []string
		for _, u := range s.userOrder {
			ids = append(ids, u.ID)
		}
		for _, a := range s.agentOrder {
			if a.ID != c.agentID {
				ids = append(ids, a.ID)
			}
		}
		if exclude != nil {
			ids = slices.DeleteFunc(ids, exclude.has)
		}
		data := []obj{}
		for _, id := range pageOf(ids, page, size) {
			data = append(data, s.peerJSONLocked(id, c.agentID))
		}
		return list(data, pageMeta(page, size, len(ids)))
	})
}

func (s *Server) listChats(c *call) {
	page, size, bad := c.pageParams(s.opts.ChatsPageSize)
	if bad != nil {
		c.send(*bad)
		return
	}
	s.locked(c, func() reply {
		var mine []*roomState
		for _, r := range s.roomOrder {
			if r.has(c.agentID) {
				mine = append(mine, r)
			}
		}
		data := []obj{}
		for _, r := range pageOf(mine, page, size) {
			data = append(data, roomJSON(r))
		}
		return list(data, pageMeta(page, size, len(mine)))
	})
}

type chatBody struct {
	Chat struct {
		Title  *string `json:"title"`
		TaskID *string `json:"task_id"`
	} `json:"chat"`
}

func (s *Server) createChat(c *call) {
	var body chatBody
	if !c.decode(&body) {
		return
	}
	title, taskID := deref(body.Chat.Title), deref(body.Chat.TaskID)
	if utf8.RuneCountInString(title) > maxTitleLen {
		c.send(invalid("validation_error", "title is too long", "/chat/title", "should be at most 120 character(s)"))
		return
	}
	s.locked(c, func() reply {
		r := s.newRoomLocked(title, taskID)
		s.addParticipantLocked(r, c.agentID, "owner")
		return ok(http.StatusCreated, roomJSON(r))
	})
}

func (s *Server) getChat(c *call) {
	s.locked(c, func() reply {
		r := s.agentRoomLocked(c.r.PathValue("chat_id"), c.agentID)
		if r == nil {
			return notFound("chat room")
		}
		return ok(http.StatusOK, roomJSON(r))
	})
}

func (s *Server) patchChat(c *call) {
	var body chatBody
	if !c.decode(&body) {
		return
	}
	title := deref(body.Chat.Title)
	switch {
	case strings.TrimSpace(title) == "":
		c.send(invalid("validation_error", "title can't be blank", "/chat/title", "can't be blank"))
		return
	case utf8.RuneCountInString(title) > maxTitleLen:
		c.send(invalid("validation_error", "title is too long", "/chat/title", "should be at most 120 character(s)"))
		return
	}
	s.locked(c, func() reply {
		r := s.agentRoomLocked(c.r.PathValue("chat_id"), c.agentID)
		if r == nil {
			return notFound("chat room")
		}
		r.title = title
		r.updated = s.nowLocked()
		return ok(http.StatusOK, roomJSON(r))
	})
}

func (s *Server) listParticipants(c *call) {
	s.locked(c, func() reply {
		r := s.agentRoomLocked(c.r.PathValue("chat_id"), c.agentID)
		if r == nil {
			return notFound("chat room")
		}
		data := []obj{}
		for _, p := range r.participants {
			data = append(data, s.participantJSONLocked(p))
		}
		return ok(http.StatusOK, data)
	})
}

func (s *Server) addParticipant(c *call) {
	var body struct {
		Participant struct {
			ParticipantID string  `json:"participant_id"`
			Role          *string `json:"role"`
		} `json:"participant"`
	}
	if !c.decode(&body) {
		return
	}
	id, role := body.Participant.ParticipantID, "member"
	if body.Participant.Role != nil {
		role = *body.Participant.Role
	}
	switch {
	case id == "":
		c.send(invalid("validation_error", "participant_id is required", "/participant/participant_id", "can't be blank"))
		return
	case role != "owner" && role != "admin" && role != "member":
		c.send(invalid("validation_error", "invalid role", "/participant/role", "is invalid"))
		return
	}
	s.locked(c, func() reply {
		r := s.agentRoomLocked(c.r.PathValue("chat_id"), c.agentID)
		if r == nil {
			return notFound("chat room")
		}
		if _, _, _, known := s.entityLocked(id); !known {
			return notFound("participant")
		}
		p, added := s.addParticipantLocked(r, id, role)
		if !added {
			return invalid("already_participant", "already a participant of this chat", "/participant/participant_id", "is already a participant")
		}
		return ok(http.StatusCreated, s.participantJSONLocked(p))
	})
}

func (s *Server) removeParticipant(c *call) {
	s.locked(c, func() reply {
		r := s.agentRoomLocked(c.r.PathValue("chat_id"), c.agentID)
		if r == nil {
			return notFound("chat room")
		}
		p, removed := s.removeParticipantLocked(r, c.r.PathValue("id"))
		if !removed {
			return notFound("participant")
		}
		return ok(http.StatusOK, s.participantJSONLocked(p))
	})
}

// getContext returns what the agent sent plus text that mentions it,
// oldest first, for rehydration.
func (s *Server) getContext(c *call) {
	limit, bad := c.limitParam(defaultCtxLimit)
	if bad != nil {
		c.send(*bad)
		return
	}
	cursor := c.r.URL.Query().Get("cursor")
	s.locked(c, func() reply {
		r := s.agentRoomLocked(c.r.PathValue("chat_id"), c.agentID)
		if r == nil {
			return notFound("chat room")
		}
		after, bad := s.cursorAfterLocked(cursor)
		if bad != nil {
			return *bad
		}
		var items []*messageState
		for _, m := range r.messages {
			if m.SenderID == c.agentID || (m.MessageType == "text" && mentions(m, c.agentID)) {
				items = append(items, m)
			}
		}
		return cursorPage(items, after, limit, nil)
	})
}

func mentions(m *messageState, id string) bool {
	return slices.ContainsFunc(m.Mentions, func(mn Mention) bool { return mn.ID == id })
}

func (s *Server) postActivity(c *call) {
	var body struct {
		Working *bool `json:"working"`
	}
	if !c.decode(&body) {
		return
	}
	if body.Working == nil {
		c.send(invalid("validation_error", "working is required", "/working", "can't be blank"))
		return
	}
	s.locked(c, func() reply {
		r := s.agentRoomLocked(c.r.PathValue("chat_id"), c.agentID)
		if r == nil {
			return notFound("chat room")
		}
		r.working[c.agentID] = *body.Working
		r.workingAt[c.agentID] = s.nowLocked()
		return ok(http.StatusOK, obj{"working": *body.Working})
	})
}

// limitParam reads limit (default def, capped at 100).
func (c *call) limitParam(def int) (int, *reply) {
	v := c.r.URL.Query().Get("limit")
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		r := invalid("validation_error", "invalid limit", "/limit", "must be a positive integer")
		return 0, &r
	}
	return min(n, maxPageSize), nil
}

// cursorAfterLocked resolves a cursor (the id of the last message of
// the previous page) to a sequence number; "" means from the start.
func (s *Server) cursorAfterLocked(cursor string) (int64, *reply) {
	if cursor == "" {
		return 0, nil
	}
	m := s.messages[cursor]
	if m == nil {
		r := invalid("validation_error", "invalid cursor", "/cursor", "is invalid")
		return 0, &r
	}
	return m.seq, nil
}

// cursorPage returns up to limit items (oldest first) that come after
// sequence number after. extra is merged into the metadata.
func cursorPage(items []*messageState, after int64, limit int, extra obj) reply {
	start, _ := slices.BinarySearchFunc(items, after+1, func(m *messageState, seq int64) int {
		return cmp.Compare(m.seq, seq)
	})
	end := min(start+limit, len(items))
	data := make([]obj, 0, end-start)
	for _, m := range items[start:end] {
		data = append(data, messageJSON(m))
	}
	hasMore := end < len(items)
	meta := obj{"has_more": hasMore, "limit": limit, "next_cursor": nil}
	if hasMore && end > start {
		meta["next_cursor"] = items[end-1].ID
	}
	for k, v := range extra {
		meta[k] = v
	}
	return list(data, meta)
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
