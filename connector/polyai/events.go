package polyai

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/coder/websocket"

	"github.com/bridgeworks/bridge/connector"
)

// Event types the connector acts on (the rest are forwarded as they are).
const (
	typeRequestJoin    = "EVENT_TYPE_REQUEST_POLY_AGENT_JOIN"
	typeUserMessage    = "EVENT_TYPE_USER_MESSAGE"
	typeUserTyping     = "EVENT_TYPE_USER_TYPING"
	typeUserEndSession = "EVENT_TYPE_USER_END_SESSION"
	typeHeartbeat      = "EVENT_TYPE_HEARTBEAT"
	typeAgentJoined    = "EVENT_TYPE_POLY_AGENT_JOINED"
	typeAgentThinking  = "EVENT_TYPE_POLY_AGENT_THINKING"
	typeAgentMessage   = "EVENT_TYPE_POLY_AGENT_MESSAGE"
	typeChunk          = "EVENT_TYPE_POLY_AGENT_MESSAGE_CHUNK"
	typeLiveTyping     = "EVENT_TYPE_LIVE_AGENT_TYPING"
	typeSessionStart   = "EVENT_TYPE_SESSION_START"
	typeSessionEnd     = "EVENT_TYPE_SESSION_END"
	typeSystemMessage  = "EVENT_TYPE_SYSTEM_MESSAGE"
	typeBatch          = "EVENT_TYPE_EVENT_BATCH"
)

// wireEvent is one server event (polyai.md §5). Inside a batch the
// payload may sit under the oneof key named after the type.
type wireEvent struct {
	ID        string          `json:"id"`
	Sequence  *int64          `json:"sequence"`
	Timestamp string          `json:"timestamp"`
	Type      string          `json:"type"`
	Payload   json.RawMessage `json:"payload"`
	Metadata  json.RawMessage `json:"metadata,omitempty"`
}

func (e *wireEvent) seq() int64 {
	if e.Sequence == nil || *e.Sequence < 0 {
		return 0
	}
	return *e.Sequence
}

// eventName is the bridge's name of a type: EVENT_TYPE_POLY_AGENT_MESSAGE
// → poly_agent_message.
func eventName(typ string) string {
	n := strings.ToLower(strings.TrimPrefix(typ, "EVENT_TYPE_"))
	if n == "" {
		return "unknown"
	}
	return n
}

// decodeInner decodes an event of a batch, finding its payload under
// "payload" or the oneof key, else {}.
func decodeInner(raw json.RawMessage) (wireEvent, bool) {
	var e wireEvent
	if json.Unmarshal(raw, &e) != nil || e.Type == "" {
		return e, false
	}
	if len(e.Payload) == 0 || string(e.Payload) == "null" {
		var m map[string]json.RawMessage
		if json.Unmarshal(raw, &m) == nil {
			e.Payload = m[eventName(e.Type)]
		}
	}
	return e, true
}

// frame handles one text frame of ws: an event or a batch of them.
func (s *session) frame(rs *runState, ws *websocket.Conn, data []byte, first *bool) {
	var e wireEvent
	if err := json.Unmarshal(data, &e); err != nil || e.Type == "" {
		s.c.log.Warn().Str("session_id", s.id).Int("bytes", len(data)).Msg("polyai: frame is not an event; skipped")
		return
	}
	if e.Type != typeBatch {
		if *first {
			*first = false
			s.afterReplay(rs, ws)
		}
		s.handle(rs, e, false)
		return
	}
	var p struct {
		Events []json.RawMessage `json:"events"`
	}
	if err := json.Unmarshal(e.Payload, &p); err != nil {
		s.c.log.Warn().Str("session_id", s.id).Msg("polyai: batch without events; skipped")
		return
	}
	evs := make([]wireEvent, 0, len(p.Events))
	for _, raw := range p.Events {
		if inner, ok := decodeInner(raw); ok {
			evs = append(evs, inner)
		} else {
			s.c.log.Warn().Str("session_id", s.id).Msg("polyai: batch event without a type; skipped")
		}
	}
	// Sequence order; events without one after the others, as they came.
	sort.SliceStable(evs, func(i, j int) bool {
		a, b := evs[i].seq(), evs[j].seq()
		return a > 0 && (b == 0 || a < b)
	})
	for _, inner := range evs {
		s.handle(rs, inner, true)
	}
	if *first {
		*first = false
		s.afterReplay(rs, ws)
	}
}

// afterReplay runs once the first batch of a socket was handled: it asks
// the agent to join when nobody did yet, then lets commands through.
func (s *session) afterReplay(rs *runState, ws *websocket.Conn) {
	s.mu.Lock()
	join := !s.rec.Joined && s.rec.AutoJoin && !s.joinSent && !s.isGone()
	s.joinSent = s.joinSent || join
	s.mu.Unlock()
	if join {
		frame := clientFrame(typeRequestJoin, json.RawMessage("{}"), map[string]string{"client_event_id": "bridge-join-" + s.id})
		if err := s.write(rs.ctx, frame); err != nil {
			s.c.log.Debug().Str("session_id", s.id).Msg("polyai: join not sent; retried at the reconnect")
			return
		}
	}
	s.setReady(ws)
}

// handle turns one server event into connector events, in sequence
// order, each sequence once.
func (s *session) handle(rs *runState, e wireEvent, gap bool) {
	if e.Type == typeHeartbeat {
		return // liveness only
	}
	if len(e.Payload) == 0 || string(e.Payload) == "null" {
		e.Payload = json.RawMessage("{}")
	}
	cid := customID(e.Metadata)
	seq := e.seq()
	s.mu.Lock()
	if e.Type == typeSessionStart { // first in every replay, whatever the cursor
		var p struct {
			Capabilities struct {
				Heartbeat *int `json:"heartbeat_interval_seconds"`
			} `json:"capabilities"`
		}
		if json.Unmarshal(e.Payload, &p) == nil && p.Capabilities.Heartbeat != nil {
			if n := *p.Capabilities.Heartbeat; n > 0 {
				s.hbEvery = time.Duration(n) * time.Second
			} else {
				s.hbEvery = -1 // advertised 0: heartbeats off
			}
			s.scheduleHeartbeatLocked(true)
		}
	}
	if seq > 0 && seq <= s.emitted {
		// Stored already: only rebuild an unassembled reply.
		var out []connector.Event
		if e.Type == typeChunk {
			out = s.feedLocked(rs, e, seq, true)
		}
		s.mu.Unlock()
		s.resolve(e, cid, seq)
		for _, ev := range out {
			s.emit(rs, ev, s.assembledAck(ev, 0))
		}
		return
	}
	switch e.Type {
	case typeAgentJoined, typeRequestJoin:
		if !s.rec.Joined {
			s.rec.Joined, s.dirty = true, true
		}
	case typeSystemMessage:
		if notJoined(systemText(e.Payload)) && s.rec.Joined {
			s.rec.Joined, s.dirty, s.joinSent = false, true, false
		}
	}
	var out []connector.Event
	if e.Type == typeChunk {
		out = s.feedLocked(rs, e, seq, false)
	}
	if seq > 0 {
		s.emitted = seq
		s.pending = append(s.pending, pend{seq: seq, left: 1 + len(out)})
	}
	s.mu.Unlock()
	s.resolve(e, cid, seq)

	ev := connector.Event{Room: s.id, Name: eventName(e.Type), Key: s.key(e, seq), Data: encodeEvent(e),
		GapFill: gap && seq > 0, Transient: e.Type == typeAgentThinking || e.Type == typeLiveTyping}
	ev.Time, _ = time.Parse(time.RFC3339Nano, e.Timestamp)
	s.emit(rs, ev, s.ack(seq, ev.GapFill))
	for _, a := range out {
		s.emit(rs, a, s.assembledAck(a, seq))
	}
	if e.Type == typeSessionEnd {
		s.end(rs)
	}
}

// key is the event's id (its Nats-Msg-Id), or one made of what
// identifies it when the server sent none.
func (s *session) key(e wireEvent, seq int64) string {
	if e.ID != "" {
		return e.ID
	}
	h := sha256.New()
	h.Write([]byte(s.id))
	h.Write([]byte{0})
	h.Write([]byte(e.Type))
	h.Write([]byte{0})
	if seq > 0 {
		h.Write([]byte(e.Timestamp))
	}
	h.Write(e.Payload)
	return "h" + hex.EncodeToString(h.Sum(nil)[:16])
}

// ack settles sequence seq once its event is stored.
func (s *session) ack(seq int64, gap bool) connector.AckFunc {
	if seq == 0 {
		return nil
	}
	return func(_ context.Context, err error) {
		s.settle(seq, err == nil)
		if err == nil && gap {
			s.c.gapFilled.Add(1)
		}
	}
}

// encodeEvent is the data of a forwarded event: the server's envelope
// with the payload always under "payload".
func encodeEvent(e wireEvent) json.RawMessage {
	b, err := json.Marshal(e)
	if err != nil {
		return json.RawMessage(`{}`)
	}
	return b
}

// customID returns metadata.custom.client_event_id.
func customID(meta json.RawMessage) string {
	if len(meta) == 0 {
		return ""
	}
	var m struct {
		Custom map[string]json.RawMessage `json:"custom"`
	}
	if json.Unmarshal(meta, &m) != nil {
		return ""
	}
	var id string
	if json.Unmarshal(m.Custom["client_event_id"], &id) != nil {
		return ""
	}
	return id
}

func systemText(payload json.RawMessage) string {
	var p struct {
		Level   string `json:"level"`
		Message string `json:"message"`
	}
	_ = json.Unmarshal(payload, &p)
	return p.Message
}

func notJoined(msg string) bool {
	l := strings.ToLower(msg)
	return strings.Contains(l, "conversation not found") || strings.Contains(l, "conversation id not found")
}

// resolve answers the command waiting for a client event: its echo, or
// the SYSTEM_MESSAGE error that carries its client_event_id.
func (s *session) resolve(e wireEvent, cid string, seq int64) {
	if cid == "" {
		return
	}
	var r reply
	switch e.Type {
	case typeUserMessage, typeRequestJoin, typeUserEndSession:
		r = reply{payload: e.Payload, seq: seq}
	case typeSystemMessage:
		var p struct {
			Level   string `json:"level"`
			Message string `json:"message"`
		}
		_ = json.Unmarshal(e.Payload, &p)
		if p.Level != "" && p.Level != "SYSTEM_MESSAGE_LEVEL_ERROR" {
			return
		}
		r = reply{err: classify(p.Message)}
	default:
		return
	}
	s.mu.Lock()
	if r.err == nil {
		s.echoes[s.echoAt] = echo{cid: cid, r: r}
		s.echoAt = (s.echoAt + 1) % recentEchoes
	}
	ch := s.waiters[cid]
	s.mu.Unlock()
	if ch != nil {
		select {
		case ch <- r:
		default:
		}
	}
}

// classify maps a SYSTEM_MESSAGE error about a client event onto the
// connector's error vocabulary (the server sends no codes, only texts).
func classify(msg string) error {
	l := strings.ToLower(msg)
	pe := &connector.PlatformError{Status: http.StatusBadRequest, Code: "refused", Message: msg}
	switch {
	case strings.Contains(l, "high load"):
		pe.Status, pe.Code, pe.RetryAfter = http.StatusTooManyRequests, "high_load", 2*time.Second
	case notJoined(msg):
		pe.Status, pe.Code = http.StatusServiceUnavailable, "not_joined"
	case strings.Contains(l, "session not found"):
		pe.Status, pe.Code = http.StatusNotFound, "session_not_found"
	case strings.Contains(l, "try again") || strings.Contains(l, "unable to retrieve session"):
		pe.Status, pe.Code = http.StatusServiceUnavailable, "unavailable"
	}
	return pe
}

// end handles SESSION_END (or a handshake refused for a session the
// platform ended): the session is over, its record removed, and later
// commands for it are refused with session_ended.
func (s *session) end(rs *runState) {
	s.markGone(errSessionEnded(s.id))
	s.c.mu.Lock()
	if s.c.sessions[s.id] == s {
		delete(s.c.sessions, s.id)
	}
	if len(s.c.ended) >= 10000 {
		clear(s.c.ended)
	}
	s.c.ended[s.id] = struct{}{}
	s.c.mu.Unlock()
	ctx, cancel := context.WithTimeout(rs.ctx, 10*time.Second)
	defer cancel()
	s.c.forget(ctx, s.id)
}

// clientFrame encodes a client event: type, payload and
// metadata.custom (polyai.md §5).
func clientFrame(typ string, payload json.RawMessage, custom map[string]string) []byte {
	var b bytes.Buffer
	m := map[string]any{"type": typ, "payload": payload}
	if len(custom) > 0 {
		m["metadata"] = map[string]any{"custom": custom}
	}
	_ = json.NewEncoder(&b).Encode(m) // plain values always encode
	return bytes.TrimRight(b.Bytes(), "\n")
}
