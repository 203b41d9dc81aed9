package polyaiemu

import (
	"bytes"
	"encoding/json"
	"time"
)

// Inbound client events (polyai.md §5, §6, §7).

// maxTypingLog bounds the USER_TYPING states kept per session.
const maxTypingLog = 100

// System message texts of the error catalog (polyai.md §12).
const (
	errInvalidEvent   = "Unknown event type or invalid message format"
	errNotAllowed     = "Event type not allowed: "
	errNoConversation = "Error: Conversation ID not found in session"
	errCannotStart    = "Sorry, I'm unable to start a conversation right now. Please try again later."
	errCannotRespond  = "Sorry, I'm having trouble responding right now. Please try again."
)

// UserMessage is one USER_MESSAGE the session received (and echoed).
type UserMessage struct {
	Text          string
	MessageID     string // the server's message_id, sent on the echo
	ClientEventID string // metadata.custom.client_event_id, "" when absent
	// Custom is metadata.custom; values that are not strings are kept as
	// their JSON text.
	Custom map[string]string
	// To is who held the conversation: AgentPolyAI, AgentQueued,
	// AgentLive or AgentLeft.
	To   AgentState
	Time time.Time
	// Duplicate is true when an earlier message of the session carried
	// the same non-empty ClientEventID.
	Duplicate bool
}

type clientEvent struct {
	Type     string          `json:"type"`
	Payload  json.RawMessage `json:"payload"`
	Metadata json.RawMessage `json:"metadata"`
}

// parseMeta returns the metadata to echo ({"custom": ...} or nil) and
// the custom map; ok is false when metadata or custom is not an object.
func parseMeta(raw json.RawMessage) (echo []byte, custom map[string]string, ok bool) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil, true
	}
	var m struct {
		Custom map[string]json.RawMessage `json:"custom"`
	}
	if !isObject(raw) || json.Unmarshal(raw, &m) != nil {
		return nil, nil, false
	}
	if m.Custom == nil {
		return nil, nil, true
	}
	custom = make(map[string]string, len(m.Custom))
	for k, v := range m.Custom {
		var str string
		if json.Unmarshal(v, &str) == nil {
			custom[k] = str
		} else {
			custom[k] = string(v)
		}
	}
	return mustJSON(obj{"custom": m.Custom}), custom, true
}

func isObject(raw json.RawMessage) bool {
	t := bytes.TrimSpace(raw)
	return len(t) > 0 && t[0] == '{'
}

// handleClientEvent handles one text frame from c.
func (s *Server) handleClientEvent(c *wsConn, data []byte) {
	var ev clientEvent
	err := json.Unmarshal(data, &ev)
	meta, custom, metaOK := parseMeta(ev.Metadata)

	s.mu.Lock()
	defer s.mu.Unlock()
	sess := c.sess
	if sess.ended {
		return
	}
	sess.lastActive = time.Now()
	fail := func(message string) { s.systemLocked(sess, c, LevelError, message, meta) }
	if err != nil || ev.Type == "" || !isObject(ev.Payload) || !metaOK {
		fail(errInvalidEvent)
		return
	}
	switch ev.Type {
	case TypeHeartbeat:
		s.beats.Add(sess.lastActive)
		if sess.firstBeat.IsZero() {
			sess.firstBeat = sess.lastActive
		}
		s.emitLocked(sess, TypeHeartbeat, []byte("{}"), meta, false, c)
	case TypeRequestJoin:
		var p map[string]json.RawMessage
		if json.Unmarshal(ev.Payload, &p) != nil || len(p) > 0 {
			fail(errInvalidEvent) // only the plain join is accepted (§4.3)
			return
		}
		s.joinLocked(sess, c, meta)
	case TypeUserMessage:
		var p struct {
			Text *string `json:"text"`
		}
		if json.Unmarshal(ev.Payload, &p) != nil || p.Text == nil || *p.Text == "" {
			fail(errInvalidEvent)
			return
		}
		s.userMessageLocked(sess, c, *p.Text, meta, custom)
	case TypeUserTyping:
		var p struct {
			State string `json:"state"`
		}
		if json.Unmarshal(ev.Payload, &p) != nil || (p.State != "TYPING_STATE_STARTED" && p.State != "TYPING_STATE_STOPPED") {
			fail(errInvalidEvent)
			return
		}
		if len(sess.typing) >= maxTypingLog {
			sess.typing = append(sess.typing[:0], sess.typing[1:]...)
		}
		sess.typing = append(sess.typing, p.State) // not echoed (§6)
	case TypeUserEndSession:
		s.emitLocked(sess, TypeUserEndSession, []byte("{}"), meta, true, nil)
		s.endLocked(sess, ReasonUserEnd)
	default:
		if serverOnly[ev.Type] {
			fail(errNotAllowed + ev.Type)
			return
		}
		fail(errInvalidEvent)
	}
}

// systemLocked sends a transient SYSTEM_MESSAGE to c, or to every
// socket of the session when c is nil.
func (s *Server) systemLocked(sess *session, c *wsConn, level, message string, meta []byte) {
	s.emitLocked(sess, TypeSystemMessage, mustJSON(obj{"level": level, "message": message}), meta, false, c)
}

// joinLocked answers REQUEST_POLY_AGENT_JOIN: echo, then (unless the
// conversation is already held) POLY_AGENT_JOINED, THINKING, greeting.
func (s *Server) joinLocked(sess *session, c *wsConn, meta []byte) {
	s.emitLocked(sess, TypeRequestJoin, []byte("{}"), meta, true, nil)
	switch sess.agent {
	case AgentPolyAI, AgentQueued, AgentLive:
		return
	}
	if msg, failing := s.takeFailLocked(sess, errCannotStart); failing {
		s.systemLocked(sess, c, LevelError, msg, meta)
		return
	}
	sess.agent = AgentPolyAI
	s.emitLocked(sess, TypeAgentJoined, mustJSON(obj{"agent_name": s.opts.AgentName,
		"agent_avatar_url": s.opts.AgentAvatarURL}), nil, true, nil)
	s.sayLocked(sess, AgentMessage{Text: s.opts.Greeting})
}

// userMessageLocked records and echoes a USER_MESSAGE and lets the
// PolyAI agent answer when it holds the conversation.
func (s *Server) userMessageLocked(sess *session, c *wsConn, text string, meta []byte, custom map[string]string) {
	if s.takeDropLocked(sess) {
		return // silently dropped, as over the rate limit (§12)
	}
	if sess.agent == AgentNone {
		s.systemLocked(sess, c, LevelError, errNoConversation, meta)
		return
	}
	if sess.refuseUser > 0 {
		sess.refuseUser--
		s.systemLocked(sess, c, LevelError, sess.refuseMsg, meta)
		return
	}
	m := UserMessage{Text: text, MessageID: newID(), ClientEventID: custom["client_event_id"],
		Custom: custom, To: sess.agent, Time: time.Now()}
	if m.ClientEventID != "" {
		if _, dup := sess.seen[m.ClientEventID]; dup {
			m.Duplicate = true
			sess.duplicates++
		} else {
			if sess.seen == nil {
				sess.seen = map[string]struct{}{}
			}
			sess.seen[m.ClientEventID] = struct{}{}
		}
	}
	sess.messages = append(sess.messages, m)
	s.emitLocked(sess, TypeUserMessage, mustJSON(obj{"text": text, "message_id": m.MessageID}), meta, true, nil)
	if sess.agent != AgentPolyAI {
		return
	}
	if msg, failing := s.takeFailLocked(sess, errCannotRespond); failing {
		s.systemLocked(sess, c, LevelError, msg, meta)
		return
	}
	if !s.opts.NoAutoReply {
		s.sayLocked(sess, s.opts.Reply(text))
	}
}

// sayLocked sends POLY_AGENT_THINKING (transient) and then m, whole or
// as chunks when the session streams (polyai.md §9). With attachments
// or suggestions, the last chunk has empty text and carries them.
func (s *Server) sayLocked(sess *session, m AgentMessage) {
	s.emitLocked(sess, TypeAgentThinking, []byte("{}"), nil, false, nil)
	id := newID()
	if !sess.opts.Streaming {
		s.emitLocked(sess, TypeAgentMessage, mustJSON(obj{"message_id": id, "text": m.Text,
			"attachments": m.attachments(), "response_suggestions": m.suggestions()}), nil, true, nil)
		return
	}
	parts := chunks(m.Text, s.opts.ChunkSize)
	if len(parts) == 0 || len(m.Attachments) > 0 || len(m.Suggestions) > 0 {
		parts = append(parts, "")
	}
	for i, text := range parts {
		last := i == len(parts)-1
		p := obj{"message_id": id, "text": text, "attachments": []Attachment{},
			"response_suggestions": []obj{}, "chunk_index": i + 1, "is_complete": last}
		if last {
			p["attachments"], p["response_suggestions"] = m.attachments(), m.suggestions()
		}
		s.emitLocked(sess, TypeAgentMessageChunk, mustJSON(p), nil, true, nil)
	}
}
