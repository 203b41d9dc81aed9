package polyaiemu

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestAccessToken(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{Host: "https://example.com", TokenTTL: time.Hour})
	u := s.URL() + AccessTokenPath
	h := func(token, host string) http.Header {
		out := http.Header{"Content-Type": {"application/json"}}
		if token != "" {
			out.Set("X-Token", token)
		}
		if host != "" {
			out.Set("X-Host", host)
		}
		return out
	}
	status, body, _ := post(t, u, h(s.ConnectorToken(), "https://app.example.com"), "{}")
	if status != 200 || body["token_type"] != "Bearer" || body["expires_in"] != 3600.0 {
		t.Fatalf("token: %d %v", status, body)
	}
	parts := strings.Split(body["access_token"].(string), ".")
	if len(parts) != 3 {
		t.Fatalf("access token is not a JWT: %v", body["access_token"])
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	var claims struct {
		Exp int64 `json:"exp"`
	}
	if err != nil || json.Unmarshal(raw, &claims) != nil || time.Until(time.Unix(claims.Exp, 0)) < 59*time.Minute {
		t.Fatalf("claims %s (%v)", raw, err)
	}
	for _, tc := range []struct {
		name, token, host, body string
		status                  int
		message                 string
	}{
		{"no headers", "", "", "{}", 401, "Missing authentication headers"},
		{"no host", s.ConnectorToken(), "", "{}", 401, "Missing authentication headers"},
		{"unknown token", "nope", "https://example.com", "{}", 401, "Connector token does not exist"},
		{"other host", s.ConnectorToken(), "https://evil.com", "{}", 401, "Failed to validate connector"},
		{"suffix is not a subdomain", s.ConnectorToken(), "https://badexample.com", "{}", 401, "Failed to validate connector"},
		{"bad body", s.ConnectorToken(), "https://example.com", "[1]", 400, "Error parsing request: body is not a JSON object"},
		{"empty body", s.ConnectorToken(), "https://example.com", "", 200, ""},
	} {
		status, body, _ := post(t, u, h(tc.token, tc.host), tc.body)
		if status != tc.status || (tc.message != "" && body["message"] != tc.message) {
			t.Errorf("%s: %d %v, want %d %q", tc.name, status, body, tc.status, tc.message)
		}
	}
}

func TestCreateSession(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{})
	tok := token(t, s)
	u := s.URL() + SessionsPath
	for _, tc := range []struct {
		name, auth, body string
		status           int
		message          string
	}{
		{"no auth", "", "{}", 400, "Missing access token"},
		{"not bearer", "Token " + tok, "{}", 401, "Missing authentication headers"},
		{"bad token", "Bearer nope", "{}", 401, "Invalid access token"},
		{"bad json", "Bearer " + tok, `{"streaming_enabled": "yes"}`, 400, "Error parsing request"},
		{"bad platform", "Bearer " + tok, `{"platform": "fax"}`, 400, "Error parsing request: platform must be"},
	} {
		h := http.Header{"Content-Type": {"application/json"}}
		if tc.auth != "" {
			h.Set("Authorization", tc.auth)
		}
		status, body, _ := post(t, u, h, tc.body)
		msg, _ := body["message"].(string)
		if status != tc.status || !strings.HasPrefix(msg, tc.message) {
			t.Errorf("%s: %d %v, want %d %q", tc.name, status, body, tc.status, tc.message)
		}
	}
	// The body may be omitted; streaming shows in SESSION_START.
	for _, tc := range []struct {
		body      string
		streaming bool
		platform  string
	}{{"", false, "web"}, {`{"streaming_enabled": true, "platform": "ios", "device_type": "phone"}`, true, "ios"}} {
		sid, tok := newSession(t, s, tc.body)
		info, _ := s.Session(sid)
		if info.Streaming != tc.streaming || info.Platform != tc.platform || info.Token != tok {
			t.Fatalf("session %+v", info)
		}
		c := mustDial(t, s, sid, tok, "")
		start := c.waitType(TypeSessionStart, 1)
		caps, _ := start.Payload["capabilities"].(map[string]any)
		if caps["streaming"] != tc.streaming || caps["max_message_size_bytes"] != 131072.0 ||
			caps["heartbeat_interval_seconds"] != 30.0 || caps["max_reconnect_attempts"] != 10.0 {
			t.Fatalf("capabilities %v", caps)
		}
	}
}

func TestFailREST(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{})
	s.FailREST(SessionsPath, 1, http.StatusTooManyRequests, 1500*time.Millisecond)
	tok := token(t, s) // another path: not affected
	h := http.Header{"Authorization": {"Bearer " + tok}}
	status, body, hdr := post(t, s.URL()+SessionsPath, h, "")
	if status != 429 || hdr.Get("Retry-After") != "2" || body["message"] != "rate limited" {
		t.Fatalf("rate limited: %d %v %q", status, body, hdr.Get("Retry-After"))
	}
	if status, body, _ := post(t, s.URL()+SessionsPath, h, ""); status != 200 {
		t.Fatalf("after the fault: %d %v", status, body)
	}
	s.FailREST("", 2, http.StatusInternalServerError, 0)
	s.ClearRESTFaults()
	if status, _, _ := post(t, s.URL()+SessionsPath, h, ""); status != 200 {
		t.Fatalf("cleared fault still fires: %d", status)
	}
	// Unknown paths answer 404 with a message.
	if status, body, _ := post(t, s.URL()+"/api/v1/nope", h, ""); status != 404 || body["message"] == nil {
		t.Fatalf("unknown path: %d %v", status, body)
	}
}
