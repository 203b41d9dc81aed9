package bandemu

import (
	"time"
)

// Fault knobs. Each one changes how the emulator behaves from the next
// request or frame on; they are safe to call at any time.

type faultState struct {
	restFail       int
	restStatus     int
	restRetryAfter time.Duration
	restDelay      time.Duration
	wsReject       int
	wsStatus       int
	wsRetryAfter   time.Duration
	routes         []routeFault
	restRedirect   int
	restRedirectTo string
	wsRedirect     int
	wsRedirectTo   string
}

// routeFault fails the next n calls of one method and path.
type routeFault struct {
	method, path string
	n, status    int // status hangUp: close the connection, answer nothing
	retryAfter   time.Duration
}

// hangUp is the status of a [Server.HangUpRoute] rule.
const hangUp = -1

func (s *Server) takeRESTFaultLocked(method, path string) (status int, retryAfter time.Duration, ok bool) {
	if s.faults.restFail > 0 {
		s.faults.restFail--
		return s.faults.restStatus, s.faults.restRetryAfter, true
	}
	for i := range s.faults.routes {
		f := &s.faults.routes[i]
		if f.n > 0 && f.method == method && f.path == path {
			f.n--
			return f.status, f.retryAfter, true
		}
	}
	return 0, 0, false
}

// takeRedirectLocked returns where to redirect the next REST call
// (socket false) or upgrade (socket true), if anywhere.
func (s *Server) takeRedirectLocked(socket bool) (string, bool) {
	n, to := &s.faults.restRedirect, s.faults.restRedirectTo
	if socket {
		n, to = &s.faults.wsRedirect, s.faults.wsRedirectTo
	}
	if *n <= 0 {
		return "", false
	}
	*n--
	return to, true
}

func (s *Server) takeUpgradeFaultLocked() (status int, retryAfter time.Duration, ok bool) {
	if s.faults.wsReject <= 0 {
		return 0, 0, false
	}
	s.faults.wsReject--
	return s.faults.wsStatus, s.faults.wsRetryAfter, true
}

// FailREST makes the next n REST calls fail with status before
// authentication, with a JSON error body and, when retryAfter > 0, a
// Retry-After header in whole seconds (rounded up). n <= 0 cancels.
func (s *Server) FailREST(n int, status int, retryAfter time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.restFail, s.faults.restStatus, s.faults.restRetryAfter = n, status, retryAfter
}

// FailRoute makes the next n calls of method on path (exactly, e.g.
// "/api/v1/agent/chats/<id>/messages"; the query is not compared) fail as
// [Server.FailREST] does, leaving other routes alone. Each call adds a
// rule; a rule with n <= 0 does nothing.
func (s *Server) FailRoute(method, path string, n, status int, retryAfter time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.routes = append(s.faults.routes, routeFault{method: method, path: path, n: n, status: status, retryAfter: retryAfter})
}

// HangUpRoute makes the next n calls of method on path (as in
// [Server.FailRoute]) end with the connection closed and no answer, after
// the request was read and before it is executed: a transport failure.
func (s *Server) HangUpRoute(method, path string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.routes = append(s.faults.routes, routeFault{method: method, path: path, n: n, status: hangUp})
}

// ClearRouteFaults cancels every [Server.FailRoute] rule.
func (s *Server) ClearRouteFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.routes = nil
}

// RedirectREST answers the next n REST calls, before authentication, with
// 307 Temporary Redirect to base (e.g. another server's URL) followed by
// the call's path and query. n <= 0 cancels.
func (s *Server) RedirectREST(n int, base string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.restRedirect, s.faults.restRedirectTo = n, base
}

// RedirectUpgrades answers the next n WebSocket upgrades, before
// authentication, with 307 Temporary Redirect to base followed by the
// upgrade's path and query (which carries the api_key). n <= 0 cancels.
func (s *Server) RedirectUpgrades(n int, base string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.wsRedirect, s.faults.wsRedirectTo = n, base
}

// RejectUpgrades refuses the next n WebSocket upgrades with status and
// the body {"error":{"code","message","request_id","retry_after"}}: code
// too_many_requests for 429, tracking_failed for 503. retry_after (body)
// and Retry-After (header) are set when retryAfter > 0. n <= 0 cancels.
func (s *Server) RejectUpgrades(n int, status int, retryAfter time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.wsReject, s.faults.wsStatus, s.faults.wsRetryAfter = n, status, retryAfter
}

// SetRESTDelay delays every REST response by d (0 turns it off).
func (s *Server) SetRESTDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.restDelay = d
}

// StallHeartbeats stops (true) or resumes (false) answering heartbeats.
// Stalled heartbeats still count as traffic for the idle timeout, so a
// client that keeps sending them is not closed by the server: it must
// notice the missing replies itself.
func (s *Server) StallHeartbeats(stall bool) { s.stallHeartbeats.Store(stall) }

// SetPushesEnabled turns server pushes on or off. While off, messages,
// rooms and contacts still change but no event reaches any socket, as
// when the platform misses a push; clients must catch up through REST
// (/messages/next, GET /agent/chats). Protocol replies and supersede
// are not affected. Pushes are on by default.
func (s *Server) SetPushesEnabled(enabled bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pushesOff = !enabled
}

// DropSockets closes every agent socket abruptly (no close frame), like
// a network failure.
func (s *Server) DropSockets() {
	s.mu.Lock()
	conns := s.detachAllLocked()
	s.mu.Unlock()
	for _, c := range conns {
		c.closeNow()
	}
}

// SendMalformed writes one text frame that is not valid JSON to every
// agent socket.
func (s *Server) SendMalformed() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.enqueue([]byte(`["not a phoenix frame",`))
	}
}

// Supersede pushes supersede on agent_control to every agent socket and
// closes it (1000), as when a newer session takes over.
func (s *Server) Supersede() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		s.supersedeLocked(c)
	}
}
