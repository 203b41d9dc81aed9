package chatapiemu

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestChatBlocking(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{AgentName: "Helper"})
	r := do(t, s, "POST", "/agents/"+s.AgentID()+"/chat", s.opts.AgentKey, map[string]any{"message": "What's the weather?"})
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	m := r.json(t)
	if m["response"] != "Echo: What's the weather?" || m["agent_id"] != s.AgentID() || m["agent_name"] != "Helper" {
		t.Fatalf("body %v", m)
	}
	if _, ok := m["tool_calls"]; ok {
		t.Fatal("tool_calls without scripted tools")
	}
	s.SetScript(s.AgentID(), Script{Text: "Sunny.", ToolCalls: []ToolCall{{Name: "weather", Args: map[string]any{"city": "Oslo"}, Result: "sun"}}})
	m = do(t, s, "POST", "/agents/"+s.AgentID()+"/chat", s.APIKey(), map[string]any{"message": "Oslo?"}).json(t)
	calls, _ := m["tool_calls"].([]any)
	if m["response"] != "Sunny." || len(calls) != 1 || calls[0].(map[string]any)["name"] != "weather" {
		t.Fatalf("scripted body %v", m)
	}
	h := s.History(s.AgentID())
	want := []string{"user:What's the weather?", "assistant:Echo: What's the weather?", "user:Oslo?", "assistant:Sunny."}
	if len(h) != len(want) {
		t.Fatalf("history %v", h)
	}
	for i, w := range want {
		if got := h[i].Role + ":" + h[i].Content; got != w {
			t.Fatalf("turn %d = %q, want %q", i, got, w)
		}
	}
	if n := s.ChatPosts(s.AgentID()); n != 2 {
		t.Fatalf("ChatPosts %d", n)
	}
}

func TestStreamChunks(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{})
	id := s.AgentID()
	s.SetScript(id, Script{Text: "Hello there!", ToolCalls: []ToolCall{{Name: "search", Args: map[string]any{"q": "x"}, Result: "found"}}})
	chunks, sawDone, err := openStream(t, s, id, s.APIKey(), "Hi").readAll(t)
	if err != nil || !sawDone {
		t.Fatalf("stream ended with err %v, [DONE] %v", err, sawDone)
	}
	want := []streamChunk{
		{Type: "tool_start", Tool: "search", Args: map[string]any{"q": "x"}},
		{Type: "tool_end", Tool: "search", Content: "found"},
		{Type: "text", Content: "Hello"},
		{Type: "text", Content: " there!"},
		{Type: "done"},
	}
	if len(chunks) != len(want) {
		t.Fatalf("chunks %+v", chunks)
	}
	for i, w := range want {
		c := chunks[i]
		if c.Type != w.Type || c.Content != w.Content || c.Tool != w.Tool || fmt.Sprint(c.Args) != fmt.Sprint(w.Args) {
			t.Fatalf("chunk %d = %+v, want %+v", i, c, w)
		}
	}
	h := s.History(id)
	if len(h) != 2 || h[0].Content != "Hi" || h[1].Content != "Hello there!" {
		t.Fatalf("history %+v", h)
	}
}

func TestStreamFragmentsAndTokenType(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{TextChunkType: "token"})
	text := strings.Repeat("abcdefghij", 7) + "é" // 71 characters
	for _, n := range []int{1, 7, 70, 71, 500} {
		s.SetScript("", Script{Text: text, Fragments: n})
		chunks, sawDone, err := openStream(t, s, s.AgentID(), s.APIKey(), "go").readAll(t)
		if err != nil || !sawDone {
			t.Fatalf("n=%d: err %v, [DONE] %v", n, err, sawDone)
		}
		got, count := textOf(chunks, "token")
		if got != text || count != min(n, 71) {
			t.Fatalf("n=%d: %d chunks, text %q", n, count, got)
		}
		if last := chunks[len(chunks)-1]; last.Type != "done" {
			t.Fatalf("n=%d: last chunk %+v", n, last)
		}
	}
}

func TestHistoryEndpoint(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{MaxHistoryLimit: 50})
	id := s.AgentID()
	for i := range 15 {
		do(t, s, "POST", "/agents/"+id+"/chat", s.APIKey(), map[string]any{"message": fmt.Sprint("m", i)})
	}
	get := func(q string) response { return do(t, s, "GET", "/agents/"+id+"/history"+q, s.opts.AgentKey, nil) }
	msgs := func(r response) []any {
		if r.status != http.StatusOK {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
		return r.json(t)["messages"].([]any)
	}
	if n := len(msgs(get(""))); n != 20 {
		t.Fatalf("default limit gave %d messages", n)
	}
	last := msgs(get("?limit=3"))
	if len(last) != 3 {
		t.Fatalf("limit=3 gave %d", len(last))
	}
	first := last[0].(map[string]any)
	if first["role"] != "assistant" || first["content"] != "Echo: m13" {
		t.Fatalf("oldest of the last 3: %v", first)
	}
	if _, err := time.Parse(time.RFC3339, first["created_at"].(string)); err != nil || strings.Contains(first["created_at"].(string), ".") {
		t.Fatalf("created_at %v: %v", first["created_at"], err)
	}
	for q, want := range map[string]string{
		"?limit=x":  "Input should be a valid integer, unable to parse string as an integer",
		"?limit=0":  "Input should be greater than or equal to 1",
		"?limit=51": "Input should be less than or equal to 50",
	} {
		r := get(q)
		if r.status != http.StatusUnprocessableEntity || r.detail(t) != want {
			t.Fatalf("%s: %d %s", q, r.status, r.body)
		}
		loc := r.json(t)["detail"].([]any)[0].(map[string]any)["loc"].([]any)
		if loc[0] != "query" || loc[1] != "limit" {
			t.Fatalf("%s: loc %v", q, loc)
		}
	}
}

func TestChatValidation(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{MaxBodyBytes: 1024})
	path := "/agents/" + s.AgentID() + "/chat"
	for _, tc := range []struct {
		name string
		body any
		typ  string
		loc  string
	}{
		{"no body", nil, "missing", "[body]"},
		{"no message", map[string]any{"text": "hi"}, "missing", "[body message]"},
		{"number", map[string]any{"message": 3}, "string_type", "[body message]"},
		{"empty", map[string]any{"message": "  "}, "string_too_short", "[body message]"},
		{"not json", "{", "json_invalid", "[body 0]"},
		{"array", "[1]", "model_attributes_type", "[body]"},
		{"context not list", map[string]any{"message": "x", "context": "prior"}, "list_type", "[body context]"},
		{"context item", map[string]any{"message": "x", "context": []any{map[string]any{"role": "user"}}}, "missing", "[body context 0 content]"},
		{"conversation id", map[string]any{"message": "x", "conversation_id": 5}, "string_type", "[body conversation_id]"},
	} {
		r := do(t, s, "POST", path, s.APIKey(), tc.body)
		if r.status != http.StatusUnprocessableEntity {
			t.Fatalf("%s: status %d: %s", tc.name, r.status, r.body)
		}
		e := r.json(t)["detail"].([]any)[0].(map[string]any)
		if e["type"] != tc.typ || fmt.Sprint(e["loc"]) != tc.loc || e["msg"] == "" {
			t.Fatalf("%s: detail %v", tc.name, e)
		}
	}
	r := do(t, s, "POST", path, s.APIKey(), map[string]any{"message": strings.Repeat("x", 2000)})
	if r.status != http.StatusRequestEntityTooLarge || r.detail(t) == "" {
		t.Fatalf("big body: %d %s", r.status, r.body)
	}
	if len(s.History(s.AgentID())) != 0 {
		t.Fatal("an invalid chat was recorded")
	}
	ok := do(t, s, "POST", path, s.APIKey(), map[string]any{"message": "x", "extra": true,
		"context": []any{map[string]any{"role": "user", "content": "before"}}})
	if ok.status != http.StatusOK {
		t.Fatalf("valid body with context and an extra field: %d %s", ok.status, ok.body)
	}
}

func TestAuthAndScopes(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{})
	other := s.AddAgent("Other")
	team, err := s.AddTeam("T", "parallel", other.ID)
	if err != nil {
		t.Fatal(err)
	}
	chat := func(agentID string) string { return "/agents/" + agentID + "/chat" }
	body := map[string]any{"message": "hi"}
	for _, tc := range []struct {
		name, method, path, key string
		status                  int
		detail                  string
	}{
		{"no key", "POST", chat(s.AgentID()), "", 401, "Not authenticated"},
		{"bad key", "POST", chat(s.AgentID()), "at_nope", 401, "The API key provided is invalid."},
		{"agent key, other agent", "POST", chat(other.ID), s.opts.AgentKey, 403, "This API key does not have access to this resource."},
		{"agent key, team", "POST", "/teams/" + team.ID + "/chat", s.opts.AgentKey, 403, "This API key does not have access to this resource."},
		{"team key, agent", "POST", chat(other.ID), team.APIKey, 403, "This API key does not have access to this resource."},
		{"agent key, unknown agent", "GET", "/agents/nope/history", other.APIKey, 403, "This API key does not have access to this resource."},
		{"global key, unknown agent", "POST", chat("nope"), s.APIKey(), 404, "Agent not found"},
		{"global key, unknown team", "POST", "/teams/nope/chat", s.APIKey(), 404, "Team not found"},
		{"unknown route", "GET", "/nothing", s.APIKey(), 404, "Not Found"},
	} {
		r := do(t, s, tc.method, tc.path, tc.key, body)
		if r.status != tc.status || r.detail(t) != tc.detail {
			t.Fatalf("%s: %d %s", tc.name, r.status, r.body)
		}
		if tc.status == 401 && r.header.Get("WWW-Authenticate") != "Bearer" {
			t.Fatalf("%s: no WWW-Authenticate", tc.name)
		}
	}
	if r := do(t, s, "POST", chat(other.ID), other.APIKey, body); r.status != 200 {
		t.Fatalf("own agent key: %d", r.status)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	for h, want := range map[string]int{"bearer " + s.APIKey(): 200, "Basic " + s.APIKey(): 401, "Bearer": 401} {
		req := newRequest(t, ctx, s, "GET", "/agents/"+other.ID+"/history", "", nil)
		req.Header.Set("Authorization", h)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("Authorization %q: %d", strings.Fields(h)[0], resp.StatusCode)
		}
	}
	if r := do(t, s, "GET", "/agents/"+other.ID, other.APIKey, nil); r.status != 200 || r.json(t)["name"] != "Other" {
		t.Fatalf("GET agent: %d %s", r.status, r.body)
	}
	if !s.RevokeKey(other.APIKey) {
		t.Fatal("revoke")
	}
	if r := do(t, s, "POST", chat(other.ID), other.APIKey, body); r.status != 401 {
		t.Fatalf("revoked key: %d", r.status)
	}
	var posts []RequestRecord
	for _, rec := range s.Requests() {
		if rec.Key == "agent:"+other.ID && rec.Method == "POST" {
			posts = append(posts, rec)
		}
	}
	if len(posts) != 1 || posts[0].Status != 200 || posts[0].Path != "/api"+chat(other.ID) || string(posts[0].Body) != `{"message":"hi"}` {
		t.Fatalf("records of the agent key's POSTs: %+v", posts)
	}
}

// TestConcurrentStreams runs 100 streamed chats at once, each of many
// fragments, on 100 agents, and checks every one got its whole answer
// and recorded exactly its two turns.
func TestConcurrentStreams(t *testing.T) {
	t.Parallel()
	const n, frags = 100, 200
	s := newServer(t, Options{})
	agents := make([]Agent, n)
	for i := range agents {
		agents[i] = s.AddAgent(fmt.Sprint("agent ", i))
		s.SetScript(agents[i].ID, Script{Text: strings.Repeat(fmt.Sprintf("%03d ", i), frags), Fragments: frags})
	}
	var wg sync.WaitGroup
	errs := make(chan string, n)
	for i, a := range agents {
		wg.Go(func() {
			chunks, sawDone, err := openStream(t, s, a.ID, a.APIKey, "go").readAll(t)
			text, count := textOf(chunks, "text")
			if err != nil || !sawDone || count != frags || text != strings.Repeat(fmt.Sprintf("%03d ", i), frags) {
				errs <- fmt.Sprintf("agent %d: err %v, [DONE] %v, %d chunks", i, err, sawDone, count)
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	for _, a := range agents {
		if h := s.History(a.ID); len(h) != 2 || s.ChatPosts(a.ID) != 1 {
			t.Fatalf("%s: %d turns, %d posts", a.Name, len(h), s.ChatPosts(a.ID))
		}
	}
	eventually(t, "streams closed", func() bool { return s.ActiveStreams() == 0 })
}
