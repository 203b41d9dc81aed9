package agentconnectemu

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"
)

var (
	providers        = []string{"openai", "anthropic", "groq", "google"}
	interactionModes = []string{"human_to_agent", "agent_to_agent"}
)

// agentSpec is one validated entry of the request's agents object.
type agentSpec struct {
	key, provider, model string
	capabilities         []string
	personality          *string
}

// createSession is POST /api/chat/sessions/create (§3.1).
func (s *Server) createSession(c *call) reply {
	body, err := io.ReadAll(c.r.Body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return fail(http.StatusRequestEntityTooLarge, "Request body too large")
		}
		return fail(http.StatusBadRequest, "Invalid request body")
	}
	typ, specs, metadata, errs := s.parseCreate(body)
	if len(errs) > 0 {
		return invalid(errs...)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fail(http.StatusServiceUnavailable, "emulator is shutting down")
	}
	if max := s.opts.MaxSessionsPerUser; max > 0 && s.liveSessionsLocked(c.user) >= max {
		return fail(http.StatusTooManyRequests, "Maximum active sessions reached")
	}
	for _, sp := range specs {
		if s.missingKeys[sp.provider] {
			return fail(http.StatusInternalServerError, "API key not found for provider: "+sp.provider)
		}
	}
	id := "session_" + c.now.UTC().Format("20060102150405") + "_" + randomHex(4)
	sess := &session{id: id, owner: c.user, typ: typ, created: c.now, metadata: metadata,
		humanID: "human_" + id, lastActivity: c.now, conns: map[*conn]struct{}{}, lastSpeaker: -1}
	for i, sp := range specs {
		key := sp.key
		if typ == "human_agent" {
			key = "ai_agent"
		}
		sess.agents = append(sess.agents, &aiAgent{key: key, id: fmt.Sprintf("ai%d_%s", i+1, id),
			provider: sp.provider, model: sp.model, capabilities: sp.capabilities, personality: sp.personality,
			windowStart: c.now, turns: map[string]int{}, ended: map[string]bool{}})
	}
	if !s.addSessionLocked(sess) {
		return fail(http.StatusServiceUnavailable, "emulator session store is full (Options.MaxSessions)")
	}
	if d := s.opts.SessionLifetime; d > 0 {
		sess.lifetime = time.AfterFunc(d, func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if !s.closed {
				s.endSessionLocked(sess, endExpired, NoticeInactiveClosed)
			}
		})
	}
	if typ == "agent_agent" {
		sess.inbox = make(chan injection, maxInbox)
		sess.work, sess.endWork = context.WithCancel(s.ctx)
		s.wg.Add(1) // under mu with closed false: Close waits for it
		go s.agentWorker(sess)
	}
	s.log.Debug().Str("session_id", id).Str("session_type", typ).Msg("session created")
	return reply{status: http.StatusOK, body: sessionView(sess)}
}

// parseCreate validates a CreateSessionRequest as pydantic would,
// keeping the order of the agents object.
func (s *Server) parseCreate(body []byte) (typ string, specs []agentSpec, metadata json.RawMessage, errs []fieldError) {
	var top map[string]json.RawMessage
	if !json.Valid(body) {
		return "", nil, nil, []fieldError{{Type: "json_invalid", Loc: []any{"body", 0}, Msg: "JSON decode error"}}
	}
	if json.Unmarshal(body, &top) != nil || top == nil {
		return "", nil, nil, []fieldError{{Type: "model_attributes_type", Loc: []any{"body"},
			Msg: "Input should be a valid dictionary or object to extract fields from"}}
	}
	bad := func(typ, msg string, loc ...any) {
		errs = append(errs, fieldError{Type: typ, Loc: append([]any{"body"}, loc...), Msg: msg})
	}
	switch raw, ok := top["session_type"]; {
	case !ok:
		bad("missing", "Field required", "session_type")
	case json.Unmarshal(raw, &typ) != nil:
		bad("string_type", "Input should be a valid string", "session_type")
	case typ != "human_agent" && typ != "agent_agent":
		bad("string_pattern_mismatch", "String should match pattern '^(human_agent|agent_agent)$'", "session_type")
	}
	if raw, ok := top["agents"]; !ok {
		bad("missing", "Field required", "agents")
	} else if specs, ok = s.parseAgents(raw, bad); !ok {
		specs = nil
	}
	if raw, ok := top["interaction_modes"]; ok && !isNull(raw) {
		var modes []string
		if json.Unmarshal(raw, &modes) != nil {
			bad("list_type", "Input should be a valid list of strings", "interaction_modes")
		}
		for i, m := range modes {
			if !slices.Contains(interactionModes, m) {
				bad("enum", "Input should be 'human_to_agent' or 'agent_to_agent'", "interaction_modes", i)
			}
		}
	}
	metadata = top["metadata"]
	if metadata != nil && !isNull(metadata) && !isObject(metadata) {
		bad("dict_type", "Input should be a valid dictionary", "metadata")
	}
	if metadata == nil {
		metadata = json.RawMessage("null")
	}
	if len(errs) == 0 {
		want := map[string]int{"human_agent": 1, "agent_agent": 2}[typ]
		if len(specs) != want {
			bad("value_error", fmt.Sprintf("Value error, %s sessions need exactly %d agent(s), got %d", typ, want, len(specs)))
		}
	}
	return typ, specs, metadata, errs
}

// parseAgents validates the agents object in order. A repeated key
// keeps its first place and its last value, as a Python dict does.
func (s *Server) parseAgents(raw json.RawMessage, bad func(string, string, ...any)) ([]agentSpec, bool) {
	if !isObject(raw) {
		bad("dict_type", "Input should be a valid dictionary", "agents")
		return nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	_, _ = dec.Token() // '{'
	var specs []agentSpec
	ok := true
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, false
		}
		key, _ := tok.(string)
		var v json.RawMessage
		if dec.Decode(&v) != nil {
			return nil, false
		}
		sp, good := s.parseAgent(key, v, bad)
		ok = ok && good
		if i := slices.IndexFunc(specs, func(a agentSpec) bool { return a.key == key }); i >= 0 {
			specs[i] = sp
		} else {
			specs = append(specs, sp)
		}
	}
	return specs, ok
}

func (s *Server) parseAgent(key string, raw json.RawMessage, bad func(string, string, ...any)) (agentSpec, bool) {
	sp := agentSpec{key: key, capabilities: []string{"conversation"}}
	var f map[string]json.RawMessage
	if !isObject(raw) || json.Unmarshal(raw, &f) != nil {
		bad("model_type", "Input should be a valid dictionary or instance of AgentConfig", "agents", key)
		return sp, false
	}
	n := 0
	fault := func(typ, msg, field string) {
		n++
		bad(typ, msg, "agents", key, field)
	}
	switch p, ok := f["provider"]; {
	case !ok:
		fault("missing", "Field required", "provider")
	case json.Unmarshal(p, &sp.provider) != nil || !slices.Contains(providers, sp.provider):
		fault("enum", "Input should be 'openai', 'anthropic', 'groq' or 'google'", "provider")
	}
	if m, ok := f["model"]; ok && !isNull(m) {
		if json.Unmarshal(m, &sp.model) != nil || !s.knownModel(sp.model) {
			fault("enum", "Input should be a valid model name ("+strings.Join(s.modelNames(), ", ")+")", "model")
		}
	} else if list := s.opts.Models[sp.provider]; len(list) > 0 {
		sp.model = list[0]
	}
	if v, ok := f["capabilities"]; ok && !isNull(v) {
		if json.Unmarshal(v, &sp.capabilities) != nil {
			fault("list_type", "Input should be a valid list of strings", "capabilities")
		}
	}
	if v, ok := f["personality"]; ok && !isNull(v) {
		var p string
		if json.Unmarshal(v, &p) != nil {
			fault("string_type", "Input should be a valid string", "personality")
		}
		sp.personality = &p
	}
	if v, ok := f["metadata"]; ok && !isNull(v) && !isObject(v) {
		fault("dict_type", "Input should be a valid dictionary", "metadata")
	}
	return sp, n == 0
}

func (s *Server) knownModel(name string) bool {
	for _, list := range s.opts.Models {
		if slices.Contains(list, name) {
			return true
		}
	}
	return false
}

func (s *Server) modelNames() []string {
	var out []string
	for _, list := range s.opts.Models {
		out = append(out, list...)
	}
	slices.Sort(out)
	return out
}

func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

func isObject(raw json.RawMessage) bool {
	t := bytes.TrimSpace(raw)
	return len(t) > 0 && t[0] == '{'
}

// orderedObject marshals as a JSON object keeping its order.
type orderedObject []struct {
	key string
	val any
}

func (o orderedObject) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, kv := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(kv.key)
		v, err := json.Marshal(kv.val)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

func (o *orderedObject) add(key string, val any) {
	*o = append(*o, struct {
		key string
		val any
	}{key, val})
}

// sessionView is the SessionResponse of §3.1.
func sessionView(sess *session) orderedObject {
	var agents orderedObject
	for _, a := range sess.agents {
		var v orderedObject
		v.add("agent_id", a.id)
		v.add("provider", a.provider)
		v.add("model", a.model)
		v.add("capabilities", a.capabilities)
		v.add("personality", a.personality)
		v.add("status", "active")
		agents.add(a.key, v)
	}
	var out orderedObject
	out.add("session_id", sess.id)
	out.add("type", "system")
	out.add("created_at", isoTime(sess.created))
	out.add("status", "active")
	out.add("session_type", sess.typ)
	out.add("agents", agents)
	out.add("metadata", sess.metadata)
	return out
}
