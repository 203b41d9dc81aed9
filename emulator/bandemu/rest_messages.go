package bandemu

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Messages, processing state and events (band.md §9, §10).

var statusFilters = []string{"", "pending", "processing", "processed", "failed", "all"}

// listMessages lists the messages addressed to the agent (text that
// mentions it, not sent by it), oldest first, filtered by status.
func (s *Server) listMessages(c *call) {
	q := c.r.URL.Query()
	filter := q.Get("status")
	if !slices.Contains(statusFilters, filter) {
		c.send(invalid("validation_error", "invalid status filter", "/status", "is invalid"))
		return
	}
	limit, bad := c.limitParam(defaultMsgLimit)
	if bad != nil {
		c.send(*bad)
		return
	}
	legacy := q.Get("cursor") == "" && (q.Get("page") != "" || q.Get("page_size") != "")
	page, size := 1, defaultMsgLimit
	if legacy {
		if page, size, bad = c.pageParams(defaultMsgLimit); bad != nil {
			c.send(*bad)
			return
		}
		c.w.Header().Set("Deprecation", "true")
		c.w.Header().Set("Sunset", "Thu, 01 Oct 2026 00:00:00 GMT")
	}
	s.locked(c, func() reply {
		r := s.agentRoomLocked(c.r.PathValue("chat_id"), c.agentID)
		if r == nil {
			return notFound("chat room")
		}
		after, bad := s.cursorAfterLocked(q.Get("cursor"))
		if bad != nil {
			return *bad
		}
		var items []*messageState
		for _, m := range r.messages {
			if m.addressedTo(c.agentID) && m.matchesFilter(c.agentID, filter) {
				items = append(items, m)
			}
		}
		meta := obj{"status_filter": nullable(filter)}
		if legacy {
			for k, v := range pageMeta(page, size, len(items)) {
				meta[k] = v
			}
			skip := min((page-1)*size, len(items))
			if skip > 0 {
				after = items[skip-1].seq
			}
			limit = size
		}
		return cursorPage(items, after, limit, meta)
	})
}

func (s *Server) nextMessage(c *call) {
	s.locked(c, func() reply {
		r := s.agentRoomLocked(c.r.PathValue("chat_id"), c.agentID)
		if r == nil {
			return notFound("chat room")
		}
		for _, m := range r.messages {
			if m.addressedTo(c.agentID) && m.statusFor(c.agentID) != StatusProcessed {
				return ok(http.StatusOK, messageJSON(m))
			}
		}
		return reply{status: http.StatusNoContent}
	})
}

// markMessage serves /processing, /processed and /failed.
func (s *Server) markMessage(c *call, target string) {
	var errText string
	if target == StatusFailed {
		var body struct {
			Error *string `json:"error"`
		}
		if !c.decode(&body) {
			return
		}
		errText = deref(body.Error)
		if isBlank(errText) {
			c.send(invalid("validation_error", "error is required", "/error", "can't be blank"))
			return
		}
	}
	s.locked(c, func() reply {
		r := s.agentRoomLocked(c.r.PathValue("chat_id"), c.agentID)
		if r == nil {
			return notFound("chat room")
		}
		m := s.messages[c.r.PathValue("id")]
		if m == nil || m.RoomID != r.id {
			return notFound("message")
		}
		var a Attempt
		if target == StatusProcessing {
			a = s.startAttemptLocked(m, c.agentID)
		} else {
			var open bool
			if a, open = s.finishAttemptLocked(m, c.agentID, target == StatusFailed, errText); !open {
				return invalid("no_active_attempt", "no active processing attempt; call /processing first", "", "")
			}
		}
		return ok(http.StatusOK, obj{"id": m.ID, "status": target, "attempt_number": a.Number, "success": true})
	})
}

type mentionIn struct {
	ID     string          `json:"id"`
	Handle string          `json:"handle"`
	Name   string          `json:"name"`
	Kind   json.RawMessage `json:"kind"`
}

func (s *Server) postMessage(c *call) {
	var body struct {
		Message struct {
			Content  *string     `json:"content"`
			Mentions []mentionIn `json:"mentions"`
		} `json:"message"`
	}
	if !c.decode(&body) {
		return
	}
	content := deref(body.Message.Content)
	if isBlank(content) {
		c.send(invalid("validation_error", "content can't be blank", "/message/content", "can't be blank"))
		return
	}
	if len(body.Message.Mentions) == 0 {
		c.send(invalid("mentions_required", "at least one mention is required", "/message/mentions", "can't be empty"))
		return
	}
	s.locked(c, func() reply {
		r := s.agentRoomLocked(c.r.PathValue("chat_id"), c.agentID)
		if r == nil {
			return notFound("chat room")
		}
		mentions, bad := s.resolveMentionsLocked(r, c.agentID, body.Message.Mentions)
		if bad != nil {
			return *bad
		}
		m := s.addMessageLocked(r, Message{Content: withMentionPrefix(content, mentions),
			SenderID: c.agentID, MessageType: "text", Mentions: mentions})
		recipients := []obj{}
		for _, mn := range mentions {
			if mn.Kind != "reference" {
				recipients = append(recipients, obj{"id": mn.ID, "handle": mn.Handle, "name": mn.Name})
			}
		}
		return ok(http.StatusCreated, obj{"id": m.ID, "success": true, "recipients": recipients})
	})
}

// resolveMentionsLocked applies the mention rules of POST .../messages.
func (s *Server) resolveMentionsLocked(r *roomState, self string, in []mentionIn) ([]Mention, *reply) {
	fail := func(i int, field, code, msg string) ([]Mention, *reply) {
		rep := invalid(code, msg, "/message/mentions/"+strconv.Itoa(i)+field, msg)
		return nil, &rep
	}
	selfHandle := s.agents[self].Handle
	out := make([]Mention, 0, len(in))
	delivers := false
	for i, mn := range in {
		kind := "mention"
		if len(mn.Kind) > 0 {
			err := json.Unmarshal(mn.Kind, &kind)
			if err != nil || string(mn.Kind) == "null" || (kind != "mention" && kind != "reference") {
				return fail(i, "/kind", "invalid_mention_kind", `kind must be "mention" or "reference"`)
			}
		}
		handle := strings.TrimPrefix(mn.Handle, "@")
		id := mn.ID
		switch {
		case id == "" && handle == "":
			return fail(i, "", "mention_missing_identifier", "mention needs an id or a handle")
		case id == self || (id == "" && handle == selfHandle):
			return fail(i, "", "cannot_mention_self", "an agent cannot mention itself")
		case id == "":
			known, exists := s.handles[handle]
			if !exists {
				return fail(i, "/handle", "handle_not_found", "handle could not be resolved")
			}
			id = known
		}
		if !r.has(id) {
			return fail(i, "", "mentioned_participant_not_in_room", "mentioned participant is not in the chat room")
		}
		if slices.ContainsFunc(out, func(m Mention) bool { return m.ID == id }) {
			return fail(i, "", "duplicate_mentions", "participant mentioned more than once")
		}
		name, h, _, _ := s.entityLocked(id)
		if mn.Name != "" {
			name = mn.Name
		}
		out = append(out, Mention{ID: id, Name: name, Handle: h, Kind: kind})
		delivers = delivers || kind == "mention"
	}
	if !delivers {
		rep := invalid("mentions_required", "at least one mention-kind entry is required", "/message/mentions", "has no mention-kind entry")
		return nil, &rep
	}
	return out, nil
}

// withMentionPrefix prepends "@name" for every mention the content
// does not reference yet, as the platform does.
func withMentionPrefix(content string, ms []Mention) string {
	var missing []string
	for _, m := range ms {
		if !strings.Contains(content, "@"+m.Name) && (m.Handle == "" || !strings.Contains(content, "@"+m.Handle)) {
			missing = append(missing, "@"+m.Name)
		}
	}
	if len(missing) == 0 {
		return content
	}
	return strings.Join(missing, " ") + " " + content
}

// isBlank reports whether s has only whitespace or invisible runes.
func isBlank(s string) bool {
	return strings.IndexFunc(s, func(r rune) bool {
		return !unicode.IsSpace(r) && !unicode.Is(unicode.Cf, r)
	}) < 0
}

func (s *Server) postEvent(c *call) {
	var body struct {
		Event struct {
			Content     *string         `json:"content"`
			MessageType string          `json:"message_type"`
			Metadata    json.RawMessage `json:"metadata"`
		} `json:"event"`
	}
	if !c.decode(&body) {
		return
	}
	ev := body.Event
	content := deref(ev.Content)
	meta := ev.Metadata
	if string(meta) == "null" {
		meta = nil
	}
	var metaObj map[string]json.RawMessage
	switch {
	case !slices.Contains(eventTypes, ev.MessageType):
		c.send(invalid("validation_error", "invalid message_type", "/event/message_type",
			"must be one of "+strings.Join(eventTypes, ", ")))
		return
	case isBlank(content):
		c.send(invalid("validation_error", "content can't be blank", "/event/content", "can't be blank"))
		return
	case utf8.RuneCountInString(content) > maxEventContentLen:
		c.send(invalid("validation_error", "content is too long", "/event/content", "should be at most 16384 character(s)"))
		return
	case len(meta) > maxEventMetadata:
		c.send(invalid("validation_error", "metadata is too large", "/event/metadata", "should be at most 65536 bytes"))
		return
	case meta != nil && json.Unmarshal(meta, &metaObj) != nil:
		c.send(invalid("validation_error", "metadata must be an object", "/event/metadata", "must be an object"))
		return
	}
	if ev.MessageType == "attention" {
		var kind string
		_ = json.Unmarshal(metaObj["kind"], &kind)
		if !slices.Contains([]string{"question", "assumption", "failure", "review"}, kind) {
			c.send(invalid("validation_error", "attention needs metadata.kind", "/event/metadata/kind",
				"must be one of question, assumption, failure, review"))
			return
		}
	}
	s.locked(c, func() reply {
		r := s.agentRoomLocked(c.r.PathValue("chat_id"), c.agentID)
		if r == nil {
			return notFound("chat room")
		}
		m := s.addMessageLocked(r, Message{Content: content, SenderID: c.agentID,
			MessageType: ev.MessageType, Metadata: slices.Clone(meta)})
		return ok(http.StatusCreated, obj{"id": m.ID, "message_type": m.MessageType, "success": true})
	})
}
