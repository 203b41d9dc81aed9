package bandemu

import (
	"bytes"
	"encoding/json"
	"strings"

	"github.com/coder/websocket"
)

// Phoenix Channels v2 on the server side (band.md §5, §7, §13).

var (
	okEmpty     = []byte(`{"status":"ok","response":{}}`)
	emptyObject = []byte(`{}`)
)

// errorReply is {"status":"error","response":{"reason":...}}, keys in
// the order Band's docs print them.
func errorReply(reason string) []byte {
	b := append([]byte(`{"status":"error","response":{"reason":`), mustJSON(reason)...)
	return append(b, "}}"...)
}

// encodeFrame builds [join_ref, ref, topic, event, payload]; joinRef
// and ref are raw JSON (a string or null).
func encodeFrame(joinRef, ref, topic, event string, payload []byte) []byte {
	b := make([]byte, 0, len(joinRef)+len(ref)+len(topic)+len(event)+len(payload)+16)
	b = append(b, '[')
	b = append(b, joinRef...)
	b = append(b, ',')
	b = append(b, ref...)
	b = append(b, ',')
	b = append(b, mustJSON(topic)...)
	b = append(b, ',')
	b = append(b, mustJSON(event)...)
	b = append(b, ',')
	b = append(b, payload...)
	return append(b, ']')
}

// rawRef validates a join_ref or ref: a JSON string, number or null.
func rawRef(raw json.RawMessage) (string, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "", false
	}
	switch raw[0] {
	case '"':
		var s string
		return string(raw), json.Unmarshal(raw, &s) == nil
	case 'n':
		return "null", string(raw) == "null"
	default:
		var n json.Number
		return string(raw), json.Unmarshal(raw, &n) == nil
	}
}

// handleFrame dispatches one client frame. A frame that is not a v2
// array closes the socket with 1003, as a Phoenix server would crash
// the transport.
func (c *wsConn) handleFrame(data []byte) {
	var parts []json.RawMessage
	if err := json.Unmarshal(data, &parts); err != nil || len(parts) != 5 {
		c.shutdown(websocket.StatusUnsupportedData, "malformed frame")
		return
	}
	joinRef, ok1 := rawRef(parts[0])
	ref, ok2 := rawRef(parts[1])
	var topic, event string
	if !ok1 || !ok2 || json.Unmarshal(parts[2], &topic) != nil || json.Unmarshal(parts[3], &event) != nil {
		c.shutdown(websocket.StatusUnsupportedData, "malformed frame")
		return
	}
	s := c.s
	switch {
	case topic == "phoenix" && event == "heartbeat":
		if !s.stallHeartbeats.Load() {
			c.enqueue(encodeFrame("null", ref, "phoenix", "phx_reply", okEmpty))
		}
	case event == "phx_join":
		s.join(c, topic, joinRef, ref)
	case event == "phx_leave":
		s.leave(c, topic, joinRef, ref)
	default:
		s.other(c, topic, joinRef, ref)
	}
}

// topicKinds are the channel patterns an agent socket may join.
var topicKinds = []string{"agent_control", "agent_rooms", "agent_contacts", "chat_room", "room_participants"}

func splitTopic(topic string) (kind, id string, ok bool) {
	kind, id, found := strings.Cut(topic, ":")
	if !found || id == "" {
		return "", "", false
	}
	for _, k := range topicKinds {
		if k == kind {
			return kind, id, true
		}
	}
	return "", "", false
}

func (s *Server) mayJoinLocked(agentID, kind, id string) bool {
	switch kind {
	case "chat_room", "room_participants":
		return s.agentRoomLocked(id, agentID) != nil
	default:
		return id == agentID
	}
}

// join answers phx_join. Rejoining a joined topic first closes the old
// channel (phx_close with the old join_ref), as Phoenix does.
func (s *Server) join(c *wsConn, topic, joinRef, ref string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, joined := c.joined[topic]; joined {
		c.enqueue(encodeFrame(old, old, topic, "phx_close", emptyObject))
		delete(c.joined, topic)
	}
	kind, id, matched := splitTopic(topic)
	switch {
	case !matched:
		c.enqueue(encodeFrame("null", ref, topic, "phx_reply", errorReply("unmatched topic")))
	case !s.mayJoinLocked(c.agentID, kind, id):
		c.enqueue(encodeFrame(joinRef, ref, topic, "phx_reply", errorReply("unauthorized")))
	default:
		c.joined[topic] = joinRef
		c.enqueue(encodeFrame(joinRef, ref, topic, "phx_reply", okEmpty))
	}
}

// leave answers phx_leave: an ok reply, then phx_close. Leaving a topic
// that is not joined is answered ok (Phoenix does the same); a stale
// join_ref is ignored.
func (s *Server) leave(c *wsConn, topic, joinRef, ref string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	current, joined := c.joined[topic]
	if !joined {
		c.enqueue(encodeFrame(joinRef, ref, topic, "phx_reply", okEmpty))
		return
	}
	if joinRef != "null" && joinRef != current {
		return
	}
	delete(c.joined, topic)
	c.enqueue(encodeFrame(current, ref, topic, "phx_reply", okEmpty))
	c.enqueue(encodeFrame(current, current, topic, "phx_close", emptyObject))
}

// other answers any other client event. Band channels are read-only,
// so a joined channel replies with an error; an unjoined topic gets
// Phoenix's "unmatched topic".
func (s *Server) other(c *wsConn, topic, joinRef, ref string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	current, joined := c.joined[topic]
	switch {
	case !joined:
		c.enqueue(encodeFrame("null", ref, topic, "phx_reply", errorReply("unmatched topic")))
	case joinRef != "null" && joinRef != current:
		// stale join_ref: ignored
	default:
		c.enqueue(encodeFrame(current, ref, topic, "phx_reply", errorReply("unsupported event")))
	}
}

// pushLocked sends event on topic to the agent's live socket when that
// socket has joined the topic. Pushes carry the channel's join_ref and
// a null ref. Nothing is sent while pushes are disabled.
func (s *Server) pushLocked(agentID, topic, event string, payload []byte) {
	if s.pushesOff {
		return
	}
	a := s.agents[agentID]
	if a == nil || a.conn == nil {
		return
	}
	joinRef, joined := a.conn.joined[topic]
	if !joined {
		return
	}
	a.conn.enqueue(encodeFrame(joinRef, "null", topic, event, payload))
}
