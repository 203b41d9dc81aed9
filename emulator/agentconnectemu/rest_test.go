package agentconnectemu

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestLoginIssuesHS256JWT(t *testing.T) {
	t.Parallel()
	secret := []byte("test-secret")
	s := newServer(t, Options{Secret: secret, TokenLifetime: 90 * time.Second})
	before := time.Now()
	r := login(t, s, DefaultUser, s.Password())
	if r.status != 200 || r.body["token_type"] != "bearer" || r.body["expires_in"] != 90.0 {
		t.Fatalf("login: %d %s", r.status, r.raw)
	}
	tok := r.body["access_token"].(string)
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %s", tok)
	}
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(parts[0] + "." + parts[1]))
	if base64.RawURLEncoding.EncodeToString(h.Sum(nil)) != parts[2] {
		t.Fatal("signature is not HS256 with the secret")
	}
	var header, cl map[string]any
	hb, _ := base64.RawURLEncoding.DecodeString(parts[0])
	cb, _ := base64.RawURLEncoding.DecodeString(parts[1])
	if json.Unmarshal(hb, &header) != nil || json.Unmarshal(cb, &cl) != nil || header["alg"] != "HS256" {
		t.Fatalf("header %s claims %s", hb, cb)
	}
	exp := int64(cl["exp"].(float64))
	if cl["sub"] != DefaultUser || cl["type"] != "access" || cl["jti"] == "" ||
		exp < before.Add(89*time.Second).Unix() || exp > time.Now().Add(91*time.Second).Unix() {
		t.Fatalf("claims %s", cb)
	}

	v := do(t, "POST", s.URL()+VerifyPath, tok, "", "")
	if v.status != 200 || v.body["valid"] != true || v.body["user"] != DefaultUser || v.body["type"] != "access" ||
		v.body["exp"] != float64(exp) || v.body["iat"] != nil || v.body["timestamp"] == nil {
		t.Fatalf("verify: %d %s", v.status, v.raw)
	}
	// A forged signature and a token of another server are refused.
	forged := parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString([]byte("nope"))
	other := New(Options{}).Token(DefaultUser)
	for _, bad := range []string{forged, other, "not-a-jwt"} {
		if v := do(t, "POST", s.URL()+VerifyPath, bad, "", ""); v.status != 401 || v.body["detail"] != "Invalid token" {
			t.Fatalf("verify %q: %d %s", bad, v.status, v.raw)
		}
		if r := createSession(t, s, bad, humanBody); r.status != 401 || r.body["detail"] != "Could not validate credentials" {
			t.Fatalf("create with %q: %d %s", bad, r.status, r.raw)
		}
	}
}

func TestLoginErrors(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{})
	s.AddUser("idle", "pw")
	s.SetUserActive("idle", false)
	form := "application/x-www-form-urlencoded"
	for _, tc := range []struct {
		name, ctype, body string
		status            int
		detail            string // detail text, or the loc of the first 422 item
	}{
		{"wrong password", form, "username=bridge&password=nope", 401, "Invalid credentials"},
		{"unknown user", form, "username=who&password=x", 401, "Invalid credentials"},
		{"inactive", form, "username=idle&password=pw", 401, "User is inactive"},
		{"json body", "application/json", `{"username":"bridge","password":"x"}`, 422, "username"},
		{"no password", form, "username=bridge", 422, "password"},
		{"bad grant", form, "username=bridge&password=x&grant_type=client_credentials", 422, "grant_type"},
	} {
		r := do(t, "POST", s.URL()+LoginPath, "", tc.ctype, tc.body)
		got, _ := r.body["detail"].(string)
		if list, ok := r.body["detail"].([]any); ok && len(list) > 0 {
			loc := list[0].(map[string]any)["loc"].([]any)
			got = loc[len(loc)-1].(string)
		}
		if r.status != tc.status || got != tc.detail {
			t.Errorf("%s: %d %s, want %d %s", tc.name, r.status, r.raw, tc.status, tc.detail)
		}
	}
}

func TestTokenVerifiedOnEveryCall(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{})
	tok := mustLogin(t, s)
	id := mustSession(t, s, tok)
	c := mustDial(t, s, id, tok)

	if r := createSession(t, s, "", humanBody); r.status != 401 || r.body["detail"] != "Not authenticated" ||
		r.header.Get("WWW-Authenticate") != "Bearer" {
		t.Fatalf("no token: %d %s", r.status, r.raw)
	}
	if n := s.ExpireTokens(DefaultUser); n != 1 {
		t.Fatalf("expired %d tokens, want 1", n)
	}
	if r := do(t, "GET", s.URL()+SessionsPath+id, tok, "", ""); r.status != 401 {
		t.Fatalf("expired token: %d %s", r.status, r.raw)
	}
	if _, resp, err := dial(t, s, id, tok, nil); err == nil || resp == nil || resp.StatusCode != 403 {
		t.Fatalf("handshake with an expired token: %v", err)
	}
	// The socket opened before expiry keeps working.
	c.text("still here?")
	c.waitFrame("reply", 0, withContent("text", "Echo: still here?"))
	// A new login works.
	fresh := mustLogin(t, s)
	if r := do(t, "POST", s.URL()+VerifyPath, fresh, "", ""); r.status != 200 {
		t.Fatalf("fresh token: %d %s", r.status, r.raw)
	}
}

func TestTokenExpiresByExp(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{TokenLifetime: time.Second, NoRateLimits: true})
	tok := mustLogin(t, s)
	// exp is whole seconds and a token is valid through its exp second.
	eventually(t, "the token to expire", func() bool {
		return do(t, "POST", s.URL()+VerifyPath, tok, "", "").status == 401
	})
}

func TestCreateSessionValidation(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{NoRateLimits: true, MaxSessionsPerUser: -1})
	tok := s.Token(DefaultUser)
	for _, tc := range []struct {
		name, body string
		status     int
		loc        string // last element of the first error's loc
	}{
		{"not json", `{"session_type":`, 422, "0"},
		{"array", `[]`, 422, "body"},
		{"no type", `{"agents":{"a":{"provider":"groq"}}}`, 422, "session_type"},
		{"bad type", `{"session_type":"group","agents":{"a":{"provider":"groq"}}}`, 422, "session_type"},
		{"no agents", `{"session_type":"human_agent"}`, 422, "agents"},
		{"two for human", `{"session_type":"human_agent","agents":{"a":{"provider":"groq"},"b":{"provider":"groq"}}}`, 422, "body"},
		{"one for agent_agent", `{"session_type":"agent_agent","agents":{"a":{"provider":"groq"}}}`, 422, "body"},
		{"bad provider", `{"session_type":"human_agent","agents":{"a":{"provider":"mistral"}}}`, 422, "provider"},
		{"no provider", `{"session_type":"human_agent","agents":{"a":{"model":"gpt-4o"}}}`, 422, "provider"},
		{"readme model", `{"session_type":"human_agent","agents":{"a":{"provider":"groq","model":"llama-3-70b"}}}`, 422, "model"},
		{"capabilities", `{"session_type":"human_agent","agents":{"a":{"provider":"groq","capabilities":"chat"}}}`, 422, "capabilities"},
		{"mode", `{"session_type":"human_agent","agents":{"a":{"provider":"groq"}},"interaction_modes":["solo"]}`, 422, "0"},
		{"metadata", `{"session_type":"human_agent","agents":{"a":{"provider":"groq"}},"metadata":[1]}`, 422, "metadata"},
		{"ok", humanBody, 200, ""},
		{"ok defaults", `{"session_type":"human_agent","agents":{"x":{"provider":"openai"}}}`, 200, ""},
	} {
		r := createSession(t, s, tok, tc.body)
		loc := ""
		if list, ok := r.body["detail"].([]any); ok && len(list) > 0 {
			l := list[0].(map[string]any)["loc"].([]any)
			loc = strings.Trim(jsonBody(l[len(l)-1]), "\"\n")
		}
		if r.status != tc.status || loc != tc.loc {
			t.Errorf("%s: %d %s, want %d at %q", tc.name, r.status, r.raw, tc.status, tc.loc)
		}
	}
	// A body over the bound is refused.
	if r := createSession(t, s, tok, `{"metadata":"`+strings.Repeat("x", maxBodyBytes)+`"}`); r.status != 413 {
		t.Errorf("big body: %d", r.status)
	}
}

func TestCreateSessionResponse(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{})
	tok := s.Token(DefaultUser)
	r := createSession(t, s, tok, `{"session_type":"human_agent","agents":{"primary":{"provider":"openai","personality":"terse"}},"metadata":{"k":"v"}}`)
	id, _ := r.body["session_id"].(string)
	if r.status != 200 || !regexp.MustCompile(`^session_\d{14}_[0-9a-f]{8}$`).MatchString(id) ||
		r.body["type"] != "system" || r.body["status"] != "active" || r.body["session_type"] != "human_agent" {
		t.Fatalf("create: %d %s", r.status, r.raw)
	}
	agents := r.body["agents"].(map[string]any)
	ai, ok := agents["ai_agent"].(map[string]any)
	if !ok || len(agents) != 1 || ai["agent_id"] != "ai1_"+id || ai["model"] != "gpt-4o" ||
		ai["personality"] != "terse" || jsonBody(ai["capabilities"]) != "[\"conversation\"]\n" {
		t.Fatalf("agents %v", agents)
	}
	// agent_agent keeps the request's keys, in order.
	r = createSession(t, s, tok, `{"session_type":"agent_agent","agents":{"zed":{"provider":"groq"},"alpha":{"provider":"google"}}}`)
	id2, _ := r.body["session_id"].(string)
	if r.status != 200 || !strings.Contains(r.raw, `"agents":{"zed":{"agent_id":"ai1_`+id2+`"`) ||
		!strings.Contains(r.raw, `"alpha":{"agent_id":"ai2_`+id2+`"`) {
		t.Fatalf("agent_agent: %d %s", r.status, r.raw)
	}
	if got, _ := s.Session(id2); got.Type != "agent_agent" || len(got.AgentIDs) != 2 || got.Owner != DefaultUser {
		t.Fatalf("test API session %+v", got)
	}
}

func TestSessionLimitsAndProviderKey(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{NoRateLimits: true, MaxSessionsPerUser: 2})
	tok := s.Token(DefaultUser)
	s.SetProviderKey("groq", false)
	if r := createSession(t, s, tok, humanBody); r.status != 500 || r.body["detail"] != "API key not found for provider: groq" {
		t.Fatalf("missing key: %d %s", r.status, r.raw)
	}
	s.SetProviderKey("groq", true)
	first := mustSession(t, s, tok)
	mustSession(t, s, tok)
	if r := createSession(t, s, tok, humanBody); r.status != 429 || r.body["detail"] != "Maximum active sessions reached" {
		t.Fatalf("third session: %d %s", r.status, r.raw)
	}
	if r := do(t, "DELETE", s.URL()+SessionsPath+first, tok, "", ""); r.status != 200 {
		t.Fatalf("delete: %d %s", r.status, r.raw)
	}
	mustSession(t, s, tok) // a deleted session frees its slot
}

func TestSessionGetAndDelete(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{})
	s.AddUser("eve", "pw")
	tok, eve := s.Token(DefaultUser), s.Token("eve")
	id := mustSession(t, s, tok)
	base := s.URL() + SessionsPath
	for _, tc := range []struct {
		method, id, token string
		status            int
	}{
		{"GET", "session_nope", tok, 404}, {"GET", id, eve, 403}, {"GET", id, tok, 500},
		{"DELETE", "session_nope", tok, 404}, {"DELETE", id, eve, 403},
	} {
		if r := do(t, tc.method, base+tc.id, tc.token, "", ""); r.status != tc.status {
			t.Errorf("%s %s: %d %s, want %d", tc.method, tc.id, r.status, r.raw, tc.status)
		}
	}

	c := mustDial(t, s, id, tok)
	r := do(t, "DELETE", base+id, tok, "", "")
	if r.status != 200 || r.body["status"] != "success" || r.body["message"] != "Session ended" {
		t.Fatalf("delete: %d %s", r.status, r.raw)
	}
	c.waitFrame("owner notice", 0, withContent("system", NoticeOwnerClosed))
	if r := do(t, "GET", base+id, tok, "", ""); r.status != 404 || r.body["detail"] != "Session not found" {
		t.Fatalf("get after delete: %d %s", r.status, r.raw)
	}
	// The socket stays open; a message gets an error frame.
	c.text("anyone?")
	c.waitFrame("error", 0, withContent("error", invalidSessionText))
	if s.Sockets(id) != 1 {
		t.Fatalf("sockets %d after delete, want 1", s.Sockets(id))
	}

	works := newServer(t, Options{SessionGetWorks: true})
	wtok := works.Token(DefaultUser)
	wid := mustSession(t, works, wtok)
	if r := do(t, "GET", works.URL()+SessionsPath+wid, wtok, "", ""); r.status != 200 || r.body["session_id"] != wid {
		t.Fatalf("get with SessionGetWorks: %d %s", r.status, r.raw)
	}
}

func TestRateLimits(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{MaxSessionsPerUser: -1, RateLimits: map[string]int{RouteVerify: 2}, RateWindow: 2 * time.Second})
	tok := s.Token(DefaultUser)
	for i := range 5 { // create: 5 per window by default
		if r := createSession(t, s, tok, humanBody); r.status != 200 {
			t.Fatalf("create %d: %d %s", i, r.status, r.raw)
		}
	}
	r := createSession(t, s, tok, humanBody)
	if ra := r.header.Get("Retry-After"); r.status != http.StatusTooManyRequests || r.body["detail"] != "Too Many Requests" || (ra != "1" && ra != "2") {
		t.Fatalf("sixth create: %d %v %s", r.status, r.header, r.raw)
	}
	// Limits are per route: verify has its own (2 here).
	for i := range 2 {
		if r := do(t, "POST", s.URL()+VerifyPath, tok, "", ""); r.status != 200 {
			t.Fatalf("verify %d: %d", i, r.status)
		}
	}
	if r := do(t, "POST", s.URL()+VerifyPath, tok, "", ""); r.status != 429 {
		t.Fatalf("third verify: %d", r.status)
	}
	// The limit counts before the token is checked, and the window resets.
	if r := createSession(t, s, "", humanBody); r.status != 429 {
		t.Fatalf("limited call without a token: %d", r.status)
	}
	eventually(t, "the window to reset", func() bool { return createSession(t, s, tok, humanBody).status == 200 })
}

func TestUnknownRoute(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{})
	if r := do(t, "GET", s.URL()+"/api/agents/list", s.Token(DefaultUser), "", ""); r.status != 404 || r.body["detail"] != "Not Found" {
		t.Fatalf("agents list: %d %s", r.status, r.raw)
	}
}
