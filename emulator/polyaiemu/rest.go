package polyaiemu

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// maxRESTBody bounds a REST request body.
const maxRESTBody = 64 << 10

// platforms are the accepted values of the session's platform field
// (the newest documented list, polyai.md §3).
var platforms = map[string]bool{"web": true, "ios": true, "android": true,
	"ios-web": true, "android-web": true, "custom": true}

// tokenState is one access token the emulator minted.
type tokenState struct {
	subject string // the end-user identity the token stands for
	expires time.Time
	revoked bool // expired by a test ([Server.ExpireToken])
}

func (s *Server) routes() {
	s.mux.HandleFunc("POST "+AccessTokenPath, s.rest(s.accessToken))
	s.mux.HandleFunc("POST "+SessionsPath, s.rest(s.createSession))
	s.mux.HandleFunc("GET "+SocketPath, s.handleSocket)
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path)
	})
}

// writeError writes the error body: {"message": ...}, the field the SDKs
// read first (polyai.md §12; the shape itself is undocumented).
func writeError(w http.ResponseWriter, status int, message string) {
	writeJSON(w, status, obj{"message": message})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(mustJSON(v))
}

func retrySeconds(d time.Duration) int { return int(math.Ceil(d.Seconds())) }

// rest wraps a REST handler with the shutdown check and the REST fault
// knob, both applied before anything else.
func (s *Server) rest(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		closed := s.closed
		status, after, failing := s.takeRESTFaultLocked(r.URL.Path)
		s.mu.Unlock()
		switch {
		case closed:
			writeError(w, http.StatusServiceUnavailable, "emulator is shutting down")
		case failing:
			if after > 0 {
				w.Header().Set("Retry-After", strconv.Itoa(retrySeconds(after)))
			}
			msg := http.StatusText(status)
			if status == http.StatusTooManyRequests {
				msg = "rate limited"
			}
			writeError(w, status, msg)
		default:
			h(w, r)
		}
	}
}

// readBody reads an optional JSON object body into v; an empty body
// leaves v alone.
func readBody(r *http.Request, v any) error {
	raw, err := io.ReadAll(io.LimitReader(r.Body, maxRESTBody+1))
	if err != nil {
		return err
	}
	if len(raw) > maxRESTBody {
		return errors.New("body larger than 64 KiB")
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil
	}
	if t := bytes.TrimSpace(raw); t[0] != '{' {
		return errors.New("body is not a JSON object")
	}
	return json.Unmarshal(raw, v)
}

// accessToken serves POST /api/v1/access-token (polyai.md §2).
func (s *Server) accessToken(w http.ResponseWriter, r *http.Request) {
	token, host := r.Header.Get("X-Token"), r.Header.Get("X-Host")
	switch {
	case token == "" || host == "":
		writeError(w, http.StatusUnauthorized, "Missing authentication headers")
		return
	case !hmac.Equal([]byte(token), []byte(s.opts.ConnectorToken)):
		writeError(w, http.StatusUnauthorized, "Connector token does not exist")
		return
	case !hostMatches(s.opts.Host, host):
		writeError(w, http.StatusUnauthorized, "Failed to validate connector")
		return
	}
	var body map[string]any
	if err := readBody(r, &body); err != nil {
		writeError(w, http.StatusBadRequest, "Error parsing request: "+err.Error())
		return
	}
	s.mu.Lock()
	jwt, ok := s.mintLocked()
	s.mu.Unlock()
	if !ok {
		writeError(w, http.StatusInternalServerError, "Failed to create access token")
		return
	}
	writeJSON(w, http.StatusOK, obj{"access_token": jwt,
		"expires_in": int64(s.opts.TokenTTL / time.Second), "token_type": "Bearer"})
}

// hostMatches reports whether X-Host value got names the registered
// host identifier or, for a web origin, a subdomain of it.
func hostMatches(registered, got string) bool {
	if registered == got {
		return true
	}
	rh, gh := hostname(registered), hostname(got)
	if rh == "" || gh == "" {
		return false
	}
	return gh == rh || strings.HasSuffix(gh, "."+rh)
}

// hostname is the lower-case host of a web origin, "" for an app id.
func hostname(v string) string {
	if !strings.Contains(v, "://") {
		return ""
	}
	u, err := url.Parse(v)
	if err != nil {
		return ""
	}
	return strings.ToLower(u.Hostname())
}

// mintLocked creates an access token: a JWT (HS256) with sub, iat, exp
// and jti, which is also kept so a test can expire it.
func (s *Server) mintLocked() (string, bool) {
	if len(s.tokens) >= s.opts.MaxTokens {
		now := time.Now()
		for k, t := range s.tokens { // make room: forget expired tokens
			if now.After(t.expires) {
				delete(s.tokens, k)
			}
		}
		if len(s.tokens) >= s.opts.MaxTokens {
			return "", false
		}
	}
	now := time.Now()
	st := &tokenState{subject: newID(), expires: now.Add(s.opts.TokenTTL)}
	enc := base64.RawURLEncoding
	head := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))
	claims := enc.EncodeToString(mustJSON(obj{"sub": st.subject, "iat": now.Unix(),
		"exp": st.expires.Unix(), "jti": newID(), "iss": "polyaiemu"}))
	mac := hmac.New(sha256.New, s.secret)
	mac.Write([]byte(head + "." + claims))
	jwt := head + "." + claims + "." + enc.EncodeToString(mac.Sum(nil))
	s.tokens[jwt] = st
	return jwt, true
}

// validTokenLocked reports whether jwt is a live token of this server.
func (s *Server) validTokenLocked(jwt string) bool {
	t := s.tokens[jwt]
	return t != nil && !t.revoked && time.Now().Before(t.expires)
}

// createSession serves POST /api/v1/sessions (polyai.md §3).
func (s *Server) createSession(w http.ResponseWriter, r *http.Request) {
	auth := r.Header.Get("Authorization")
	if auth == "" {
		writeError(w, http.StatusBadRequest, "Missing access token")
		return
	}
	jwt, bearer := strings.CutPrefix(auth, "Bearer ")
	if !bearer || jwt == "" {
		writeError(w, http.StatusUnauthorized, "Missing authentication headers")
		return
	}
	s.mu.Lock()
	valid := s.validTokenLocked(jwt)
	s.mu.Unlock()
	if !valid {
		writeError(w, http.StatusUnauthorized, "Invalid access token")
		return
	}
	var body struct {
		Streaming  *bool   `json:"streaming_enabled"`
		Platform   *string `json:"platform"`
		DeviceType string  `json:"device_type"`
	}
	if err := readBody(r, &body); err != nil {
		writeError(w, http.StatusBadRequest, "Error parsing request: "+err.Error())
		return
	}
	so := SessionOptions{Platform: "web", DeviceType: body.DeviceType}
	if body.Streaming != nil {
		so.Streaming = *body.Streaming
	}
	if body.Platform != nil {
		if !platforms[*body.Platform] {
			writeError(w, http.StatusBadRequest, "Error parsing request: platform must be one of web, ios, android, ios-web, android-web, custom")
			return
		}
		so.Platform = *body.Platform
	}
	s.mu.Lock()
	sess := s.newSessionLocked(jwt, so)
	s.mu.Unlock()
	if sess == nil {
		writeError(w, http.StatusInternalServerError, "Failed to create session")
		return
	}
	writeJSON(w, http.StatusOK, obj{"session_id": sess.id})
}
