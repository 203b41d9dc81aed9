package agentconnectemu

import (
	"encoding/json"
	"errors"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// routes registers the REST API and the socket (agentconnect.md §1-§4).
func (s *Server) routes() {
	s.mux.HandleFunc("POST "+LoginPath, s.rest(RouteLogin, false, s.login))
	s.mux.HandleFunc("POST "+VerifyPath, s.rest(RouteVerify, false, s.verify))
	s.mux.HandleFunc("POST "+CreatePath, s.rest(RouteCreate, true, s.createSession))
	s.mux.HandleFunc("GET "+SessionsPath+"{id}", s.rest(RouteGet, true, s.getSession))
	s.mux.HandleFunc("DELETE "+SessionsPath+"{id}", s.rest(RouteDelete, true, s.deleteSession))
	s.mux.HandleFunc("GET "+SocketPrefix+"{id}", s.handleSocket)
	s.mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusNotFound, detail("Not Found"))
	})
}

// call is one REST request; user is set once the token is verified.
type call struct {
	w    http.ResponseWriter
	r    *http.Request
	user string
	now  time.Time
}

// reply is an answer built under the lock and written after it.
type reply struct {
	status int
	body   any
	header http.Header
}

type obj = map[string]any

func detail(msg string) obj { return obj{"detail": msg} }

func fail(status int, msg string) reply { return reply{status: status, body: detail(msg)} }

// fieldError is one item of FastAPI's 422 detail list.
type fieldError struct {
	Type  string `json:"type"`
	Loc   []any  `json:"loc"`
	Msg   string `json:"msg"`
	Input any    `json:"input"`
}

func invalid(errs ...fieldError) reply {
	return reply{status: http.StatusUnprocessableEntity, body: obj{"detail": errs}}
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

func (c *call) send(rep reply) {
	for k, v := range rep.header {
		c.w.Header()[k] = v
	}
	writeJSON(c.w, rep.status, rep.body)
}

// rest wraps a handler in the pipeline every route shares: shutdown
// check, the route's rate limit, then (when auth) the bearer token.
// FastAPI resolves route dependencies (the limiter) before the
// endpoint's own (the user), and the body after both.
func (s *Server) rest(route string, auth bool, h func(*call) reply) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c := &call{w: w, r: r, now: time.Now()}
		r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
		s.mu.Lock()
		if f, ok := s.routeFaultLocked(r); ok {
			s.mu.Unlock()
			applyRouteFault(w, f)
			return
		}
		rep, stop := s.gateLocked(c, route, auth)
		s.mu.Unlock()
		if !stop {
			rep = h(c)
		}
		c.send(rep)
	}
}

func (s *Server) gateLocked(c *call, route string, auth bool) (reply, bool) {
	if s.closed {
		return fail(http.StatusServiceUnavailable, "emulator is shutting down"), true
	}
	if wait, ok := s.allowLocked(route, clientIP(c.r), c.now); !ok {
		rep := fail(http.StatusTooManyRequests, "Too Many Requests")
		rep.header = http.Header{"Retry-After": {strconv.Itoa(int(math.Ceil(wait.Seconds())))}}
		return rep, true
	}
	if !auth {
		return reply{}, false
	}
	token, ok := bearer(c.r)
	if !ok {
		return unauthorized("Not authenticated"), true
	}
	cl, err := s.verifyLocked(token, c.now)
	if err != nil {
		return unauthorized("Could not validate credentials"), true
	}
	c.user = cl.Sub
	return reply{}, false
}

func unauthorized(msg string) reply {
	rep := fail(http.StatusUnauthorized, msg)
	rep.header = http.Header{"Www-Authenticate": {"Bearer"}}
	return rep
}

// bearer returns the token of an "Authorization: Bearer <jwt>" header.
func bearer(r *http.Request) (string, bool) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "bearer") || strings.TrimSpace(token) == "" {
		return "", false
	}
	return strings.TrimSpace(token), true
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// rateWindow is one fixed window of a route for one client.
type rateWindow struct {
	start time.Time
	n     int
}

// allowLocked counts one call of route from ip in a fixed window, as
// fastapi-limiter does, and returns the wait when the limit is passed.
func (s *Server) allowLocked(route, ip string, now time.Time) (time.Duration, bool) {
	limit := s.opts.RateLimits[route]
	if s.opts.NoRateLimits || limit <= 0 {
		return 0, true
	}
	key := route + "|" + ip
	w := s.windows[key]
	if w == nil || now.Sub(w.start) >= s.opts.RateWindow {
		if len(s.windows) >= maxWindows {
			for k, old := range s.windows {
				if now.Sub(old.start) >= s.opts.RateWindow {
					delete(s.windows, k)
				}
			}
		}
		w = &rateWindow{start: now}
		s.windows[key] = w
	}
	w.n++
	if w.n > limit {
		return w.start.Add(s.opts.RateWindow).Sub(now), false
	}
	return 0, true
}

const maxWindows = 10000

// login is POST /api/auth/login, an OAuth2 password form (§2.1).
func (s *Server) login(c *call) reply {
	if err := c.r.ParseForm(); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return fail(http.StatusRequestEntityTooLarge, "Request body too large")
		}
		return invalid(fieldError{Type: "value_error", Loc: []any{"body"}, Msg: "Invalid form body"})
	}
	form := c.r.PostForm
	var errs []fieldError
	for _, f := range []string{"username", "password"} {
		if !form.Has(f) {
			errs = append(errs, fieldError{Type: "missing", Loc: []any{"body", f}, Msg: "Field required"})
		}
	}
	if form.Has("grant_type") && form.Get("grant_type") != "password" {
		errs = append(errs, fieldError{Type: "string_pattern_mismatch", Loc: []any{"body", "grant_type"},
			Msg: "String should match pattern '^password$'", Input: form.Get("grant_type")})
	}
	if len(errs) > 0 {
		return invalid(errs...)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[form.Get("username")]
	if u == nil || u.password != form.Get("password") {
		return fail(http.StatusUnauthorized, "Invalid credentials")
	}
	if u.inactive {
		return fail(http.StatusUnauthorized, "User is inactive")
	}
	return reply{status: http.StatusOK, body: obj{
		"access_token": s.issueTokenLocked(u.name, c.now),
		"token_type":   "bearer",
		"expires_in":   int(s.opts.TokenLifetime / time.Second),
	}}
}

// verify is POST /api/auth/verify (§2.3).
func (s *Server) verify(c *call) reply {
	token, ok := bearer(c.r)
	if !ok {
		return unauthorized("Not authenticated")
	}
	s.mu.Lock()
	cl, err := s.verifyLocked(token, c.now)
	s.mu.Unlock()
	if err != nil {
		return unauthorized("Invalid token")
	}
	return reply{status: http.StatusOK, body: obj{"valid": true, "user": cl.Sub, "type": cl.Type,
		"exp": cl.Exp, "iat": nil, "timestamp": isoTime(c.now)}}
}

// ownSessionLocked finds a live session of the caller (§3.2, §3.3).
func (s *Server) ownSessionLocked(c *call) (*session, *reply) {
	sess := s.sessions[c.r.PathValue("id")]
	if sess == nil || !sess.live() {
		rep := fail(http.StatusNotFound, "Session not found")
		return nil, &rep
	}
	if sess.owner != c.user {
		rep := fail(http.StatusForbidden, "Not authorized to access this session")
		return nil, &rep
	}
	return sess, nil
}

// getSession is GET /api/chat/sessions/{id}. The reference's handler
// omits required response fields, so by default a found session is a
// 500 (§3.2); Options.SessionGetWorks answers 200.
func (s *Server) getSession(c *call) reply {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, rep := s.ownSessionLocked(c)
	if rep != nil {
		return *rep
	}
	if !s.opts.SessionGetWorks {
		return fail(http.StatusInternalServerError,
			"2 validation errors for SessionResponse\nsession_type\n  Field required\nagents\n  Field required")
	}
	return reply{status: http.StatusOK, body: sessionView(sess)}
}

// deleteSession is DELETE /api/chat/sessions/{id}: a system notice to
// the sockets, which stay open, then the session is gone (§3.3).
func (s *Server) deleteSession(c *call) reply {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, rep := s.ownSessionLocked(c)
	if rep != nil {
		return *rep
	}
	s.endSessionLocked(sess, endDeleted, NoticeOwnerClosed)
	return reply{status: http.StatusOK, body: obj{"status": "success", "message": "Session ended"}}
}
