package agentconnectemu

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/coder/websocket"
)

// messageTypes is the MessageType enum (§4.2).
var messageTypes = []string{"text", "ping", "error", "info", "system", "response", "stop", "cooldown"}

// parseClientFrame validates a client frame as the WebSocketMessage
// model does: only type is required, timestamp defaults to now, unknown
// keys are ignored.
func parseClientFrame(data []byte, now time.Time) (Frame, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil || raw == nil {
		return Frame{}, errors.New("frame is not a JSON object")
	}
	f := Frame{Timestamp: isoTime(now)}
	t, ok := raw["type"]
	if !ok {
		return Frame{}, errors.New("type: Field required")
	}
	if json.Unmarshal(t, &f.Type) != nil || !slices.Contains(messageTypes, f.Type) {
		return Frame{}, fmt.Errorf("type: Input should be one of %v", messageTypes)
	}
	for _, field := range []struct {
		name string
		dst  *string
	}{{"content", &f.Content}, {"sender", &f.Sender}, {"receiver", &f.Receiver}} {
		if v, ok := raw[field.name]; ok && !isNull(v) && json.Unmarshal(v, field.dst) != nil {
			return Frame{}, fmt.Errorf("%s: Input should be a valid string", field.name)
		}
	}
	if v, ok := raw["timestamp"]; ok && !isNull(v) {
		var ts string
		if json.Unmarshal(v, &ts) != nil || !validTimestamp(ts) {
			return Frame{}, errors.New("timestamp: Input should be a valid datetime")
		}
		f.Timestamp = ts
	}
	if v, ok := raw["metadata"]; ok && !isNull(v) {
		if !isObject(v) || json.Unmarshal(v, &f.Metadata) != nil {
			return Frame{}, errors.New("metadata: Input should be a valid dictionary")
		}
	}
	return f, nil
}

func validTimestamp(ts string) bool {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05.999999999Z07:00"} {
		if _, err := time.Parse(layout, ts); err == nil {
			return true
		}
	}
	return false
}

// handleFrame runs one client text frame (§4.3). It blocks while a
// human_agent socket waits for the AI, as the reference handler does.
func (s *Server) handleFrame(c *conn, data []byte) {
	now := time.Now()
	f, err := parseClientFrame(data, now)
	if err != nil {
		c.enqueue(Frame{Type: "error", Content: invalidFormatPrefix + err.Error(), Timestamp: isoTime(now)}.encode())
		return
	}
	f.Socket = c.n
	sess := c.sess
	s.mu.Lock()
	s.recordLocked(&sess.received, f)
	if f.Type == "ping" { // ignored, no pong (§4.3)
		s.mu.Unlock()
		return
	}
	if !s.admitLocked(c, sess) {
		s.mu.Unlock()
		return
	}
	sess.lastActivity = now
	sess.messages++ // the client's turn is stored
	human := sess.typ == "human_agent"
	if !human {
		s.injectLocked(c, sess, f)
	}
	s.mu.Unlock()
	if human {
		s.humanTurn(c, sess, f)
	}
}

// admitLocked runs the session checks before a message. An expired or
// full session gets its notice and the socket stops reading (closes
// 1000); a deleted one gets an error frame.
func (s *Server) admitLocked(c *conn, sess *session) bool {
	if sess.live() && sess.messages >= s.opts.MaxMessages {
		s.endSessionLocked(sess, endMessageCap, "")
	}
	switch sess.endReason {
	case "":
		return true
	case endDeleted:
		c.enqueue(Frame{Type: "error", Content: invalidSessionText, Timestamp: isoTime(time.Now())}.encode())
		return false
	case endMessageCap:
		s.systemLocked(sess, NoticeMessageLimit)
	default:
		s.systemLocked(sess, NoticeInactiveNew)
	}
	c.shutdown(websocket.StatusNormalClosure, "")
	return false
}
