package polyai

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	"github.com/bridgeworks/bridge/connector"
)

// assembly collects the chunks of one streamed reply (polyai.md §9).
type assembly struct {
	id          string
	parts       map[int]string // text by chunk_index
	attachments []json.RawMessage
	suggestions []json.RawMessage
	total       int   // chunk_index of the complete chunk; 0 until seen
	first       int64 // sequence of the first chunk seen
	last        string
	timer       *time.Timer
}

type chunk struct {
	MessageID   string            `json:"message_id"`
	Text        string            `json:"text"`
	Attachments []json.RawMessage `json:"attachments"`
	Suggestions []json.RawMessage `json:"response_suggestions"`
	ChunkIndex  int               `json:"chunk_index"`
	IsComplete  bool              `json:"is_complete"`
}

// feedLocked adds one chunk and returns the assembled messages it
// completes (or the older reply it cut short); s.mu held. replayed
// chunks were stored before and only rebuild the text.
func (s *session) feedLocked(rs *runState, e wireEvent, seq int64, replayed bool) []connector.Event {
	var p chunk
	if json.Unmarshal(e.Payload, &p) != nil || p.MessageID == "" {
		return nil
	}
	var out []connector.Event
	if s.asm != nil && s.asm.id != p.MessageID {
		out = append(out, s.assembledLocked(false))
	}
	if s.asm == nil {
		if replayed && (s.rec.AsmFrom == 0 || seq < s.rec.AsmFrom) {
			return out // a reply assembled before
		}
		s.asm = &assembly{id: p.MessageID, parts: map[int]string{}, first: seq}
		if s.rec.AsmFrom == 0 && seq > 0 {
			s.rec.AsmFrom, s.dirty = seq, true
		}
		a := s.asm
		a.timer = time.AfterFunc(s.c.st.StreamTimeout, func() { s.streamTimeout(rs, a) })
	}
	a := s.asm
	idx := p.ChunkIndex
	if idx < 1 {
		idx = len(a.parts) + 1
	}
	if _, dup := a.parts[idx]; !dup {
		a.parts[idx] = p.Text
		a.attachments = append(a.attachments, p.Attachments...)
		a.suggestions = append(a.suggestions, p.Suggestions...)
	}
	a.last = e.Timestamp
	if p.IsComplete {
		a.total = idx
	}
	if a.total > 0 && len(a.parts) >= a.total {
		return append(out, s.assembledLocked(true))
	}
	a.timer.Reset(s.c.st.StreamTimeout)
	return out
}

// assembledLocked ends the current assembly and returns its
// poly_agent_message event; s.mu held.
func (s *session) assembledLocked(complete bool) connector.Event {
	a := s.asm
	s.asm = nil
	a.timer.Stop()
	n := a.total
	for i := range a.parts {
		n = max(n, i)
	}
	var text strings.Builder
	for i := 1; i <= n; i++ {
		text.WriteString(a.parts[i])
	}
	if a.attachments == nil {
		a.attachments = []json.RawMessage{}
	}
	if a.suggestions == nil {
		a.suggestions = []json.RawMessage{}
	}
	payload, _ := json.Marshal(map[string]any{"message_id": a.id, "text": text.String(),
		"attachments": a.attachments, "response_suggestions": a.suggestions,
		"chunks": len(a.parts), "complete": complete && len(a.parts) == n})
	id := "assembled-" + a.id
	data, _ := json.Marshal(map[string]any{"id": id, "sequence": nil, "timestamp": a.last,
		"type": typeAgentMessage, "payload": json.RawMessage(payload), "assembled": true,
		"first_sequence": a.first})
	ev := connector.Event{Room: s.id, Name: eventName(typeAgentMessage), Key: id, Data: data}
	ev.Time, _ = time.Parse(time.RFC3339Nano, a.last)
	return ev
}

// assembledAck settles an assembled message: it clears the replay start
// of its reply and, when seq > 0, acks that sequence (the chunk that
// completed it waits for it too).
func (s *session) assembledAck(ev connector.Event, seq int64) connector.AckFunc {
	var head struct {
		First int64 `json:"first_sequence"`
	}
	_ = json.Unmarshal(ev.Data, &head)
	return func(_ context.Context, err error) {
		if seq > 0 {
			s.settle(seq, err == nil)
		}
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.rec.AsmFrom == head.First {
			s.rec.AsmFrom, s.dirty = 0, true
		}
		s.mu.Unlock()
	}
}

// streamTimeout assembles what arrived of a reply whose chunks stopped.
func (s *session) streamTimeout(rs *runState, a *assembly) {
	s.mu.Lock()
	if s.asm != a {
		s.mu.Unlock()
		return
	}
	ev := s.assembledLocked(false)
	s.mu.Unlock()
	s.c.log.Info().Str("session_id", s.id).Msg("polyai: streamed reply incomplete; assembled what arrived")
	rs.emit(ev, s.assembledAck(ev, 0))
}
