package polyaiemu

import (
	"time"

	"github.com/coder/websocket"
)

// Fault knobs. Each one changes how the emulator behaves from the next
// request or event on; they are safe to call at any time. Methods that
// take a session id return false when it is unknown (or has ended,
// where that matters).

type faultState struct {
	rest          []restFault
	upgradeN      int
	upgradeStatus int
	upgradeAfter  time.Duration
	dropUser      int // USER_MESSAGEs to drop on any session
}

type restFault struct {
	path       string // "" = every REST path
	n, status  int
	retryAfter time.Duration
}

func (s *Server) takeRESTFaultLocked(path string) (status int, retryAfter time.Duration, ok bool) {
	for i := range s.faults.rest {
		f := &s.faults.rest[i]
		if f.n > 0 && (f.path == "" || f.path == path) {
			f.n--
			return f.status, f.retryAfter, true
		}
	}
	return 0, 0, false
}

func (s *Server) takeUpgradeFaultLocked() (status int, retryAfter time.Duration, ok bool) {
	if s.faults.upgradeN <= 0 {
		return 0, 0, false
	}
	s.faults.upgradeN--
	return s.faults.upgradeStatus, s.faults.upgradeAfter, true
}

func (s *Server) takeDropLocked(sess *session) bool {
	switch {
	case sess.dropUser > 0:
		sess.dropUser--
	case s.faults.dropUser > 0:
		s.faults.dropUser--
	default:
		return false
	}
	return true
}

func (s *Server) takeFailLocked(sess *session, def string) (string, bool) {
	if sess.failReplies <= 0 {
		return "", false
	}
	sess.failReplies--
	if sess.failMessage != "" {
		return sess.failMessage, true
	}
	return def, true
}

// FailREST makes the next n REST calls on path (AccessTokenPath,
// SessionsPath, or "" for both) fail before authentication with status,
// the body {"message": ...} and, when retryAfter > 0, a Retry-After
// header in whole seconds (rounded up): FailREST("", 1, 429, 2*time.Second)
// rate-limits the next call. Each call adds a rule; ClearRESTFaults
// removes them.
func (s *Server) FailREST(path string, n, status int, retryAfter time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.rest = append(s.faults.rest, restFault{path: path, n: n, status: status, retryAfter: retryAfter})
}

// ClearRESTFaults cancels every FailREST rule.
func (s *Server) ClearRESTFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.rest = nil
}

// RejectHandshakes refuses the next n WebSocket upgrades, before any
// check, with status (e.g. 429 or 503), {"message": ...} and a
// Retry-After header when retryAfter > 0. n <= 0 cancels.
func (s *Server) RejectHandshakes(n, status int, retryAfter time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.upgradeN, s.faults.upgradeStatus, s.faults.upgradeAfter = n, status, retryAfter
}

// DropSockets closes the sockets of a session ("" = every session)
// abruptly, without a close frame, like a network failure. The session
// lives on: a client reconnects with a cursor.
func (s *Server) DropSockets(sessionID string) {
	s.mu.Lock()
	conns := s.detachAllLocked(sessionID)
	s.mu.Unlock()
	for _, c := range conns {
		c.closeNow()
	}
}

// DropSocketsAfter lets the next n journaled events of a session reach
// its sockets and then drops them (no close frame), so a client loses
// the connection in the middle of a reply and must resume from a
// cursor. Events counted are those appended to the history, whether or
// not a socket is open. n <= 0 cancels.
func (s *Server) DropSocketsAfter(sessionID string, n int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.activeLocked(sessionID)
	if sess == nil {
		return false
	}
	sess.dropAfter = max(n, 0)
	return true
}

// CloseSockets closes the sockets of a session ("" = every session)
// with a close frame: code and reason, e.g. 4001 or 4002, which the
// SDKs know (polyai.md §13; whether the real server sends them is not
// confirmed). The session lives on.
func (s *Server) CloseSockets(sessionID string, code int, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.detachAllLocked(sessionID) {
		c.shutdown(websocket.StatusCode(code), reason)
	}
}

// DropUserMessages silently drops the next n USER_MESSAGEs of a session
// ("" = of any session): no echo, no record, no answer, as the
// documented rate limit may do. n <= 0 cancels.
func (s *Server) DropUserMessages(sessionID string, n int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	n = max(n, 0)
	if sessionID == "" {
		s.faults.dropUser = n
		return true
	}
	sess := s.activeLocked(sessionID)
	if sess == nil {
		return false
	}
	sess.dropUser = n
	return true
}

// RefuseUserMessages answers the next n USER_MESSAGEs of a session with
// a SYSTEM_MESSAGE error carrying message (and the event's
// metadata.custom) and nothing else: no echo, no record, no answer, as
// the server does when it cannot take a message ("Our system is
// experiencing high load. Please try again in a moment.", "Error:
// Unable to retrieve session", ...). n <= 0 cancels.
func (s *Server) RefuseUserMessages(sessionID string, n int, message string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.activeLocked(sessionID)
	if sess == nil {
		return false
	}
	if message == "" {
		message = errInvalidEvent
	}
	sess.refuseUser, sess.refuseMsg = max(n, 0), message
	return true
}

// FailReplies makes the agent fail the next n user messages or join
// requests of a session: the event is echoed (and recorded), then a
// SYSTEM_MESSAGE with level ERROR and message goes to the sending
// socket instead of the agent's answer. An empty message picks the
// documented one: "Sorry, I'm having trouble responding right now.
// Please try again." for a message, "Sorry, I'm unable to start a
// conversation right now. Please try again later." for a join (the
// session stays unjoined). n <= 0 cancels.
func (s *Server) FailReplies(sessionID string, n int, message string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.activeLocked(sessionID)
	if sess == nil {
		return false
	}
	sess.failReplies, sess.failMessage = max(n, 0), message
	return true
}

// SendSystemMessage sends a transient SYSTEM_MESSAGE (level is LevelInfo,
// LevelWarning or LevelError) to every socket of a session.
func (s *Server) SendSystemMessage(sessionID, level, message string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.activeLocked(sessionID)
	if sess == nil {
		return false
	}
	s.systemLocked(sess, nil, level, message, nil)
	return true
}

// SendMalformed writes one text frame that is not JSON to every socket
// of a session.
func (s *Server) SendMalformed(sessionID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.activeLocked(sessionID)
	if sess == nil {
		return false
	}
	for _, c := range sess.conns {
		c.enqueue([]byte(`{"type":"EVENT_TYPE_POLY_AGENT_MESSAGE",`))
	}
	return true
}

// ExpireSession ends a session as the idle timeout does: SESSION_END
// REASON_USER_ABANDONED to its sockets, which then close (1000); later
// handshakes get 404 "session not found".
func (s *Server) ExpireSession(sessionID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.activeLocked(sessionID)
	if sess == nil {
		return false
	}
	s.endLocked(sess, ReasonUserAbandoned)
	return true
}

// ExpireToken makes an access token invalid from now on: POST
// /api/v1/sessions answers 401 "Invalid access token" and handshakes
// with it 401 "authentication failed". Open sockets stay open (combine
// with DropSockets to force the reconnect). It returns false for a
// token this server never minted.
func (s *Server) ExpireToken(token string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tokens[token]
	if t == nil {
		return false
	}
	t.revoked = true
	return true
}
