package chatapiemu

import (
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// scope says which key kinds may call a route besides the global key.
type scope int

const (
	scopeAgent  scope = iota // agent-scoped keys of the {id} agent
	scopeTeam                // team-scoped keys of the {id} team
	scopeGlobal              // the global key only
)

type route struct {
	scope    scope
	chatPost bool // counts toward the agent's ChatPosts
	h        func(*call)
}

// routes registers the API (chatapi.md §3, §4, §6).
func (s *Server) routes() {
	p := s.opts.BasePath
	agent := p + "/agents/{id}"
	rs := map[string]route{
		"GET " + p + "/agents":           {scopeGlobal, false, s.listAgents},
		"GET " + agent:                   {scopeAgent, false, s.getAgent},
		"POST " + agent + "/chat":        {scopeAgent, true, s.chat},
		"POST " + agent + "/chat/stream": {scopeAgent, true, s.chatStream},
		"GET " + agent + "/history":      {scopeAgent, false, s.history},
		"GET " + p + "/teams/{id}":       {scopeTeam, false, s.getTeam},
		"POST " + p + "/teams/{id}/chat": {scopeTeam, false, s.teamChat},
	}
	if !s.opts.DisableConversations {
		rs["GET "+agent+"/conversations"] = route{scopeAgent, false, s.listConversations}
		rs["POST "+agent+"/conversations"] = route{scopeAgent, false, s.createConversation}
		rs["PUT "+agent+"/conversations/{conv_id}"] = route{scopeAgent, false, s.renameConversation}
		rs["DELETE "+agent+"/conversations/{conv_id}"] = route{scopeAgent, false, s.deleteConversation}
	}
	if !s.opts.DisableInbox {
		rs["GET "+agent+"/inbox"] = route{scopeAgent, false, s.inbox}
		rs["POST "+agent+"/mark-read"] = route{scopeAgent, false, s.markRead}
	}
	for pattern, rt := range rs {
		s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) { s.serveAPI(w, r, rt) })
	}
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		writeDetail(w, http.StatusNotFound, "Not Found")
		s.record(RequestRecord{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery,
			Status: http.StatusNotFound, Time: start, Duration: time.Since(start)})
	})
}

// call is one API request after authentication.
type call struct {
	w    *statusWriter
	r    *http.Request
	body []byte
	key  *keyState
	id   string // the {id} path value: agent or team
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the Flusher.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// serveAPI runs the pipeline: record, shutdown check, body, injected
// delay, injected failure, authentication (401), rate limit (429), key
// scope (403), handler (422, 404, success).
func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request, rt route) {
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w}
	c := &call{w: sw, r: r, id: r.PathValue("id")}
	defer func() {
		rec := RequestRecord{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Status: sw.status,
			Time: start, Duration: time.Since(start)}
		if c.key != nil {
			rec.Key = c.key.label()
		}
		if len(c.body) > 0 {
			rec.Body = append([]byte(nil), c.body[:min(len(c.body), maxRecordedBody)]...)
		}
		s.record(rec)
	}()

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		writeDetail(sw, http.StatusServiceUnavailable, "Service Unavailable")
		return
	}
	s.wg.Add(1)
	if a := s.agents[c.id]; rt.chatPost && a != nil {
		a.chatPosts++
	}
	if t := s.teams[c.id]; rt.scope == scopeTeam && r.Method == http.MethodPost && t != nil {
		t.posts++
	}
	delay := s.faults.delay
	s.mu.Unlock()
	defer s.wg.Done()

	body, err := io.ReadAll(http.MaxBytesReader(sw, r.Body, s.opts.MaxBodyBytes))
	c.body = body
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			writeDetail(sw, http.StatusRequestEntityTooLarge, "Request body too large")
			return
		}
		return // the client went away
	}
	if !s.wait(r, delay) {
		return
	}

	s.mu.Lock()
	status, retryAfter, failing := s.takeFailLocked(r.Method, r.URL.Path)
	var key *keyState
	token, hasToken := bearer(r.Header.Get("Authorization"))
	if !failing && hasToken {
		key = s.keys[token]
	}
	var limitWait time.Duration
	limited := false
	if key != nil {
		limitWait, limited = s.takeTokenLocked(key, time.Now())
	}
	s.mu.Unlock()
	c.key = key

	switch {
	case failing && status == hangUp:
		panic(http.ErrAbortHandler) // net/http closes the connection, no response
	case failing:
		setRetryAfter(sw, retryAfter)
		writeDetail(sw, status, statusDetail(status))
	case !hasToken:
		sw.Header().Set("WWW-Authenticate", "Bearer")
		writeDetail(sw, http.StatusUnauthorized, "Not authenticated")
	case key == nil:
		sw.Header().Set("WWW-Authenticate", "Bearer")
		writeDetail(sw, http.StatusUnauthorized, "The API key provided is invalid.")
	case limited:
		setRetryAfter(sw, limitWait)
		writeDetail(sw, http.StatusTooManyRequests, "Rate limit exceeded. Please retry later.")
	case !key.covers(rt.scope, c.id):
		writeDetail(sw, http.StatusForbidden, "This API key does not have access to this resource.")
	default:
		rt.h(c)
	}
}

// bearer returns the credentials of an "Authorization: Bearer <token>"
// header; the scheme is case-insensitive, as FastAPI's HTTPBearer has it.
func bearer(h string) (string, bool) {
	scheme, token, ok := strings.Cut(strings.TrimSpace(h), " ")
	token = strings.TrimSpace(token)
	return token, ok && strings.EqualFold(scheme, "Bearer") && token != ""
}

// wait sleeps d unless the request or the Server ends first; it reports
// whether the handler should go on.
func (s *Server) wait(r *http.Request, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	case <-s.ctx.Done():
		return false
	}
}

func (k *keyState) covers(sc scope, id string) bool {
	switch k.kind {
	case keyGlobal:
		return true
	case keyAgent:
		return sc == scopeAgent && k.id == id
	case keyTeam:
		return sc == scopeTeam && k.id == id
	}
	return false
}

// takeTokenLocked spends one token of the key's bucket. When it is
// empty it returns how long until the next token.
func (s *Server) takeTokenLocked(k *keyState, now time.Time) (time.Duration, bool) {
	if s.rateLimit <= 0 {
		return 0, false
	}
	limit := float64(s.rateLimit)
	rate := limit / s.rateWindow.Seconds() // tokens per second
	if k.last.IsZero() {
		k.tokens = limit
	} else {
		k.tokens = min(limit, k.tokens+now.Sub(k.last).Seconds()*rate)
	}
	k.last = now
	if k.tokens >= 1 {
		k.tokens--
		return 0, false
	}
	return time.Duration((1 - k.tokens) / rate * float64(time.Second)), true
}

func setRetryAfter(w http.ResponseWriter, d time.Duration) {
	if d > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(d.Seconds())))))
	}
}

func statusDetail(status int) string {
	switch status {
	case http.StatusTooManyRequests:
		return "Rate limit exceeded. Please retry later."
	case http.StatusUnauthorized:
		return "The API key provided is invalid."
	case http.StatusForbidden:
		return "This API key does not have access to this resource."
	case http.StatusNotFound:
		return "Not Found"
	}
	if t := http.StatusText(status); t != "" {
		return t
	}
	return "Internal Server Error"
}

func (s *Server) record(rec RequestRecord) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.requests) >= s.opts.MaxRequestLog {
		n := copy(s.requests, s.requests[len(s.requests)/2:])
		clear(s.requests[n:])
		s.requests = s.requests[:n]
	}
	s.requests = append(s.requests, rec)
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

// writeDetail writes a FastAPI error body {"detail": "..."}.
func writeDetail(w http.ResponseWriter, status int, detail string) {
	writeJSON(w, status, map[string]string{"detail": detail})
}

// fieldError is one item of a FastAPI (pydantic v2) 422 body.
type fieldError struct {
	Type  string `json:"type"`
	Loc   []any  `json:"loc"`
	Msg   string `json:"msg"`
	Input any    `json:"input"`
}

func (c *call) invalid(errs ...fieldError) {
	writeJSON(c.w, http.StatusUnprocessableEntity, map[string]any{"detail": errs})
}

// object parses the body as a JSON object, answering 422 when it is
// not one. An empty body is an empty object when optional is true.
func (c *call) object(optional bool) (map[string]json.RawMessage, bool) {
	if len(strings.TrimSpace(string(c.body))) == 0 {
		if optional {
			return map[string]json.RawMessage{}, true
		}
		c.invalid(fieldError{Type: "missing", Loc: []any{"body"}, Msg: "Field required"})
		return nil, false
	}
	var v any
	if err := json.Unmarshal(c.body, &v); err != nil {
		c.invalid(fieldError{Type: "json_invalid", Loc: []any{"body", 0}, Msg: "JSON decode error", Input: map[string]any{}})
		return nil, false
	}
	obj, ok := v.(map[string]any)
	if !ok {
		c.invalid(fieldError{Type: "model_attributes_type", Loc: []any{"body"},
			Msg: "Input should be a valid dictionary or object to extract fields from", Input: v})
		return nil, false
	}
	raw := make(map[string]json.RawMessage, len(obj))
	_ = json.Unmarshal(c.body, &raw) // valid: it parsed above
	return raw, true
}

// str reads an optional string field; ok is false (with a field error)
// when it is present but not a string, or empty while nonEmpty.
func str(obj map[string]json.RawMessage, name string, nonEmpty bool) (v string, present bool, fe *fieldError) {
	raw, present := obj[name]
	if !present || string(raw) == "null" {
		return "", false, nil
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		var in any
		_ = json.Unmarshal(raw, &in)
		return "", true, &fieldError{Type: "string_type", Loc: []any{"body", name}, Msg: "Input should be a valid string", Input: in}
	}
	if nonEmpty && strings.TrimSpace(v) == "" {
		return "", true, &fieldError{Type: "string_too_short", Loc: []any{"body", name}, Msg: "String should have at least 1 character", Input: v}
	}
	return v, true, nil
}

// requiredStr is str for a required field.
func requiredStr(obj map[string]json.RawMessage, name string) (string, *fieldError) {
	v, present, fe := str(obj, name, true)
	if fe == nil && !present {
		return "", &fieldError{Type: "missing", Loc: []any{"body", name}, Msg: "Field required", Input: obj}
	}
	return v, fe
}
