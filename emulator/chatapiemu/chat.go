package chatapiemu

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// chatRequest is the body of POST /agents/:id/chat and .../chat/stream.
type chatRequest struct {
	message, conversationID string
}

// parseChat validates a chat body: message (required string), optional
// conversation_id (string) and context (list of {role, content}).
func (c *call) parseChat() (chatRequest, bool) {
	obj, ok := c.object(false)
	if !ok {
		return chatRequest{}, false
	}
	var errs []fieldError
	msg, fe := requiredStr(obj, "message")
	if fe != nil {
		errs = append(errs, *fe)
	}
	conv, _, fe := str(obj, "conversation_id", false)
	if fe != nil {
		errs = append(errs, *fe)
	}
	errs = append(errs, validateContext(obj["context"])...)
	if len(errs) > 0 {
		c.invalid(errs...)
		return chatRequest{}, false
	}
	return chatRequest{message: msg, conversationID: conv}, true
}

func validateContext(raw json.RawMessage) []fieldError {
	if raw == nil || string(raw) == "null" {
		return nil
	}
	var items []any
	if err := json.Unmarshal(raw, &items); err != nil {
		var in any
		_ = json.Unmarshal(raw, &in)
		return []fieldError{{Type: "list_type", Loc: []any{"body", "context"}, Msg: "Input should be a valid list", Input: in}}
	}
	var errs []fieldError
	for i, it := range items {
		m, ok := it.(map[string]any)
		if !ok {
			errs = append(errs, fieldError{Type: "model_type", Loc: []any{"body", "context", i},
				Msg: "Input should be a valid dictionary", Input: it})
			continue
		}
		for _, f := range []string{"role", "content"} {
			switch v, ok := m[f]; {
			case !ok:
				errs = append(errs, fieldError{Type: "missing", Loc: []any{"body", "context", i, f}, Msg: "Field required", Input: m})
			case !isString(v):
				errs = append(errs, fieldError{Type: "string_type", Loc: []any{"body", "context", i, f}, Msg: "Input should be a valid string", Input: v})
			}
		}
	}
	return errs
}

func isString(v any) bool { _, ok := v.(string); return ok }

// chatTargetLocked finds the agent and checks the conversation, writing
// 404 when either is unknown.
func (s *Server) chatTargetLocked(c *call, req chatRequest) (*agentState, int, string) {
	a := s.agents[c.id]
	if a == nil {
		return nil, http.StatusNotFound, "Agent not found"
	}
	if req.conversationID != "" && !s.opts.DisableConversations && a.conversation(req.conversationID) == nil {
		return nil, http.StatusNotFound, "Conversation not found"
	}
	return a, 0, ""
}

func (s *Server) scriptLocked(a *agentState) Script {
	if a.script != nil {
		return *a.script
	}
	return s.defaultScript
}

func (s *Server) appendTurnLocked(a *agentState, t Turn) {
	t.CreatedAt = time.Now().UTC()
	if len(a.history) >= s.opts.MaxHistory {
		n := copy(a.history, a.history[len(a.history)-s.opts.MaxHistory+1:])
		clear(a.history[n:])
		a.history = a.history[:n]
	}
	a.history = append(a.history, t)
}

func (s *Server) getAgent(c *call) {
	s.mu.Lock()
	a := s.agents[c.id]
	var body map[string]any
	if a != nil {
		body = map[string]any{"id": a.ID, "name": a.Name, "description": a.Description, "status": "active",
			"message_count": len(a.history)}
	}
	s.mu.Unlock()
	if body == nil {
		writeDetail(c.w, http.StatusNotFound, "Agent not found")
		return
	}
	writeJSON(c.w, http.StatusOK, body)
}

// listAgents answers GET /agents (global key only): {"agents": [{id,
// name, description, status, message_count}]}, oldest first; the
// vendor's SDK passes page and per_page, which are not emulated.
func (s *Server) listAgents(c *call) {
	s.mu.Lock()
	out := make([]map[string]any, 0, len(s.agentOrder))
	for _, a := range s.agentOrder {
		out = append(out, map[string]any{"id": a.ID, "name": a.Name, "description": a.Description, "status": "active",
			"message_count": len(a.history)})
	}
	s.mu.Unlock()
	writeJSON(c.w, http.StatusOK, map[string]any{"agents": out})
}

// chat answers POST /agents/:id/chat: both turns are recorded, then the
// whole answer is returned.
func (s *Server) chat(c *call) {
	req, ok := c.parseChat()
	if !ok {
		return
	}
	s.mu.Lock()
	a, status, detail := s.chatTargetLocked(c, req)
	if a == nil {
		s.mu.Unlock()
		writeDetail(c.w, status, detail)
		return
	}
	sc := s.scriptLocked(a)
	text := sc.answerText(req.message)
	s.appendTurnLocked(a, Turn{Role: "user", Content: req.message, ConversationID: req.conversationID})
	s.appendTurnLocked(a, Turn{Role: "assistant", Content: text, ConversationID: req.conversationID})
	body := map[string]any{"response": text, "agent_id": a.ID, "agent_name": a.Name}
	s.mu.Unlock()
	if len(sc.ToolCalls) > 0 {
		calls := make([]map[string]any, 0, len(sc.ToolCalls))
		for _, tc := range sc.ToolCalls {
			calls = append(calls, map[string]any{"name": tc.Name, "args": tc.Args, "result": tc.Result})
		}
		body["tool_calls"] = calls
	}
	writeJSON(c.w, http.StatusOK, body)
}

// chunk is one SSE data object.
type chunk struct {
	Type    string         `json:"type"`
	Content string         `json:"content"`
	Tool    string         `json:"tool,omitempty"`
	Args    map[string]any `json:"args,omitempty"`
}

// chatStream answers POST /agents/:id/chat/stream with SSE: tool chunks,
// text chunks, done, [DONE]. The user turn is recorded when the request
// is accepted, the assistant turn when generation ends (see doc.go).
func (s *Server) chatStream(c *call) {
	req, ok := c.parseChat()
	if !ok {
		return
	}
	s.mu.Lock()
	a, status, detail := s.chatTargetLocked(c, req)
	if a == nil {
		s.mu.Unlock()
		writeDetail(c.w, status, detail)
		return
	}
	if s.streams >= s.opts.MaxStreams {
		s.mu.Unlock()
		writeDetail(c.w, http.StatusServiceUnavailable, "Too many concurrent streams")
		return
	}
	s.streams++
	fault, faulty := s.takeStreamFaultLocked(a.ID)
	sc := s.scriptLocked(a)
	s.appendTurnLocked(a, Turn{Role: "user", Content: req.message, ConversationID: req.conversationID})
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.streams--
		s.mu.Unlock()
	}()

	text := sc.answerText(req.message)
	finish := func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.appendTurnLocked(a, Turn{Role: "assistant", Content: text, ConversationID: req.conversationID})
	}
	h := c.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	c.w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(c.w)
	send := func(data []byte) bool {
		buf := make([]byte, 0, len(data)+8)
		buf = append(append(append(buf, "data: "...), data...), "\n\n"...)
		if _, err := c.w.Write(buf); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	sendChunk := func(ch chunk) bool {
		b, _ := json.Marshal(ch) // plain strings and JSON-decoded args
		return send(b)
	}
	if rc.Flush() != nil { // the headers
		finish()
		return
	}
	for _, tc := range sc.ToolCalls {
		if !sendChunk(chunk{Type: "tool_start", Tool: tc.Name, Args: tc.Args}) ||
			!sendChunk(chunk{Type: "tool_end", Tool: tc.Name, Content: tc.Result}) {
			finish()
			return
		}
	}
	frags := fragments(text, sc.Fragments)
	for i := 0; i <= len(frags); i++ {
		if faulty && i == min(fault.After, len(frags)) {
			faulty = false
			switch fault.Kind {
			case StreamCut:
				if !s.opts.DropReplyOnCut {
					finish()
				}
				panic(http.ErrAbortHandler) // close the connection mid-stream
			case StreamError:
				sendChunk(chunk{Type: "error", Content: fault.Message})
				send([]byte("[DONE]"))
				return
			case StreamStall:
				if !s.stall(c.r) {
					return // never finished generating: no assistant turn
				}
			}
		}
		if i == len(frags) {
			break
		}
		if !s.wait(c.r, sc.FragmentDelay) || !sendChunk(chunk{Type: s.opts.TextChunkType, Content: frags[i]}) {
			finish() // the client left; generation still completes
			return
		}
	}
	finish()
	if sendChunk(chunk{Type: "done"}) {
		send([]byte("[DONE]"))
	}
}

// stall blocks until ReleaseStalls (true), or the client or the Server
// goes away (false).
func (s *Server) stall(r *http.Request) bool {
	s.mu.Lock()
	s.stalled++
	release := s.faults.stallRelease
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.stalled--
		s.mu.Unlock()
	}()
	select {
	case <-release:
		return true
	case <-r.Context().Done():
	case <-s.ctx.Done():
	}
	return false
}

// history answers GET /agents/:id/history?limit=N[&conversation_id=].
func (s *Server) history(c *call) {
	q := c.r.URL.Query()
	limit := 20
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		switch {
		case err != nil:
			c.invalid(fieldError{Type: "int_parsing", Loc: []any{"query", "limit"},
				Msg: "Input should be a valid integer, unable to parse string as an integer", Input: v})
			return
		case n < 1:
			c.invalid(fieldError{Type: "greater_than_equal", Loc: []any{"query", "limit"},
				Msg: "Input should be greater than or equal to 1", Input: v})
			return
		case n > s.opts.MaxHistoryLimit:
			c.invalid(fieldError{Type: "less_than_equal", Loc: []any{"query", "limit"},
				Msg: "Input should be less than or equal to " + strconv.Itoa(s.opts.MaxHistoryLimit), Input: v})
			return
		}
		limit = n
	}
	conv := q.Get("conversation_id")
	s.mu.Lock()
	a := s.agents[c.id]
	if a == nil {
		s.mu.Unlock()
		writeDetail(c.w, http.StatusNotFound, "Agent not found")
		return
	}
	var turns []Turn
	for _, t := range a.history {
		if conv == "" || t.ConversationID == conv {
			turns = append(turns, t)
		}
	}
	turns = turns[max(0, len(turns)-limit):]
	msgs := make([]map[string]string, 0, len(turns))
	for _, t := range turns {
		msgs = append(msgs, map[string]string{"role": t.Role, "content": t.Content,
			"created_at": t.CreatedAt.Format(s.opts.TimeFormat)})
	}
	s.mu.Unlock()
	writeJSON(c.w, http.StatusOK, map[string]any{"messages": msgs})
}
