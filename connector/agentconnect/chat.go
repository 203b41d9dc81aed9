package agentconnect

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/coder/websocket"

	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/subjects"
)

// handle turns one frame into events and, when it answers the pending
// send_message, into that command's result.
func (s *sock) handle(raw []byte) {
	f, err := parseFrame(raw)
	if err != nil {
		s.c.malformed.Add(1)
		s.log.Warn().Str("problem", err.Error()).Msg("malformed frame skipped")
		return
	}
	if f.Type == "ping" {
		return // liveness only: the read deadline moved
	}
	key := s.key(raw)
	ev := connector.Event{Room: s.rec.ID, Name: f.Type, Key: key, Time: f.time(), Data: json.RawMessage(raw)}
	switch f.Type {
	case "cooldown":
		d := f.cooldownLeft()
		pe := &connector.PlatformError{Status: http.StatusTooManyRequests, Code: "cooldown", RetryAfter: d, Data: raw,
			Message: fmt.Sprintf("the agent is in cooldown for %.1fs more: %s", d.Seconds(), f.Content)}
		// The server's handler does not take a cooldown as the reply: it
		// waits its reply timeout (30s), sends the slow notice, and only
		// then reads the next frame. That notice is the cooldown's, even
		// when the room's next message (held only for the cooldown, which
		// may be shorter) is already out: it must not answer that one.
		s.mu.Lock()
		s.slowOwed++
		s.mu.Unlock()
		s.resolve(result{err: connector.HoldRoom(pe, d)})
		s.h.emit(ev)
	case "stop":
		reason := "stop"
		var m struct {
			Reason string `json:"reason"`
		}
		if json.Unmarshal(f.Metadata, &m) == nil && m.Reason != "" {
			reason = m.Reason
		}
		err := &connector.PlatformError{Status: http.StatusConflict, Code: "conversation_ended", Data: raw,
			Message: "the agent ended the conversation (" + reason + "): " + f.Content}
		s.mu.Lock()
		s.convEnded = err
		s.mu.Unlock()
		s.resolve(result{err: err})
		s.lifecycle(subjects.LifecycleConversationEnded, key, map[string]any{"session_id": s.rec.ID, "reason": reason, "frame": ev.Data})
	case "system":
		s.system(f, ev)
	case "error":
		code, status := errorCode(f.Content)
		s.resolve(result{err: &connector.PlatformError{Status: status, Code: code, Message: f.Content, Data: raw}})
		s.h.emit(ev)
		if code == "session_ended" {
			s.end("deleted", key, ev.Data)
		}
	case "text", "response":
		if f.Sender != s.rec.HumanID {
			s.resolve(result{resp: connector.Response{Status: http.StatusOK, Data: ev.Data}})
		}
		s.h.emit(ev)
	default: // info and types the platform may add: forwarded
		s.h.emit(ev)
	}
}

// system maps a notice to a lifecycle event by its exact text; others
// are forwarded as "system" events.
func (s *sock) system(f frame, ev connector.Event) {
	n, ok := notices[f.Content]
	if !ok {
		s.h.emit(ev)
		return
	}
	if f.Content == slowNotice {
		s.mu.Lock()
		trailing := s.slowOwed > 0
		if trailing {
			s.slowOwed--
		}
		s.mu.Unlock()
		if !trailing {
			s.resolve(result{err: connector.Sent(fmt.Errorf("agentconnect: session %s: %s", s.rec.ID, f.Content))})
		}
	}
	if !n.ends {
		s.lifecycle(n.lifecycle, ev.Key, map[string]any{"session_id": s.rec.ID, "reason": n.reason, "text": f.Content})
		return
	}
	s.end(n.reason, ev.Key, ev.Data)
}

// end records that the platform ended the session: a waiting send fails,
// later ones are refused, the session is forgotten and its socket closed.
func (s *sock) end(reason, key string, frame json.RawMessage) {
	err := &connector.PlatformError{Status: http.StatusGone, Code: "session_ended",
		Message: fmt.Sprintf("the platform ended session %s (%s)", s.rec.ID, reason)}
	s.mu.Lock()
	s.ended = err
	s.mu.Unlock()
	s.resolve(result{err: err})
	s.lifecycle(subjects.LifecycleSessionEnded, key, map[string]any{"session_id": s.rec.ID, "reason": reason, "frame": frame})
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	s.c.forget(ctx, s.rec.ID, 0)
}

// resolve hands r to the waiting send, if any; it reports whether one
// was waiting.
func (s *sock) resolve(r result) bool {
	s.mu.Lock()
	p := s.pending
	s.pending = nil
	s.mu.Unlock()
	if p == nil {
		return false
	}
	p.done <- r // buffered: never blocks
	return true
}

// outFrame is a client frame.
type outFrame struct {
	Type      string          `json:"type"`
	Content   string          `json:"content"`
	Sender    string          `json:"sender,omitempty"`
	Receiver  string          `json:"receiver,omitempty"`
	Timestamp string          `json:"timestamp"`
	Metadata  json.RawMessage `json:"metadata,omitempty"`
}

// send writes one message and, in a human_agent session, waits for the
// frame that answers it: the AI's text (ok), a cooldown (a room hold), a
// stop, an error or an ending notice. An agent_agent session answers
// with a stream of turns, so there the message's result is its sending.
func (s *sock) send(ctx context.Context, out outFrame) (connector.Response, error) {
	select {
	case s.sendMu <- struct{}{}:
		defer func() { <-s.sendMu }()
	case <-ctx.Done():
		return connector.Response{}, ctx.Err()
	}
	ws, err := s.waitOpen(ctx)
	if err != nil {
		return connector.Response{}, err
	}
	b, err := json.Marshal(out)
	if err != nil {
		return connector.Response{}, fmt.Errorf("agentconnect: encode message: %w", err)
	}
	p := &pending{done: make(chan result, 1)}
	human := s.rec.Type != "agent_agent"
	if human {
		s.mu.Lock()
		s.pending = p
		s.mu.Unlock()
	}
	clearPending := func() {
		s.mu.Lock()
		if s.pending == p {
			s.pending = nil
		}
		s.mu.Unlock()
	}
	wctx, cancel := context.WithTimeout(ctx, writeTimeout)
	err = ws.Write(wctx, websocket.MessageText, b)
	cancel()
	if err != nil { // a frame is written whole or not at all: safe to retry
		clearPending()
		return connector.Response{}, fmt.Errorf("agentconnect: session %s: write: %w", s.rec.ID, err)
	}
	if !human {
		return connector.Response{Status: http.StatusOK, Data: json.RawMessage(`{"sent":true}`)}, nil
	}
	t := time.NewTimer(s.c.st.ReplyTimeout)
	defer t.Stop()
	select {
	case r := <-p.done:
		return r.resp, r.err
	case <-t.C:
		clearPending()
		return connector.Response{}, connector.Sent(fmt.Errorf("agentconnect: session %s: no answer within reply_timeout (%s)", s.rec.ID, s.c.st.ReplyTimeout))
	case <-ctx.Done():
		clearPending()
		return connector.Response{}, connector.Sent(fmt.Errorf("agentconnect: session %s: waiting for the answer: %w", s.rec.ID, ctx.Err()))
	}
}

// waitOpen returns the open socket, waiting up to open_wait for a redial.
// A session the platform or its agent ended refuses at once.
func (s *sock) waitOpen(ctx context.Context) (*websocket.Conn, error) {
	t := time.NewTimer(s.c.st.OpenWait)
	defer t.Stop()
	for {
		s.mu.Lock()
		ws, opened, ended, conv := s.ws, s.opened, s.ended, s.convEnded
		s.mu.Unlock()
		switch {
		case ended != nil:
			return nil, ended
		case conv != nil:
			return nil, conv
		case ws != nil:
			return ws, nil
		}
		select {
		case <-opened:
		case <-t.C:
			return nil, fmt.Errorf("agentconnect: session %s: socket not open after %s: %w", s.rec.ID, s.c.st.OpenWait, connector.ErrNotConnected)
		case <-s.ctx.Done():
			return nil, fmt.Errorf("agentconnect: session %s: %w", s.rec.ID, connector.ErrNotConnected)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
