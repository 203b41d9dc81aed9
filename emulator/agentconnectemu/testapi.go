package agentconnectemu

import (
	"encoding/json"
	"slices"
	"time"

	"github.com/coder/websocket"
)

// The Go API tests drive the platform with. Methods taking a session id
// do nothing (and return zero or false) for an unknown one.

// Session describes one session for tests.
type Session struct {
	ID        string    `json:"session_id"`
	Owner     string    `json:"owner"`
	Type      string    `json:"session_type"`
	HumanID   string    `json:"human_id"`  // human_<id>
	AgentIDs  []string  `json:"agent_ids"` // ai1_<id>[, ai2_<id>]
	Live      bool      `json:"live"`
	EndReason string    `json:"end_reason"` // "", "deleted", "expired" or "message cap"
	Sockets   int       `json:"sockets"`    // open sockets
	Messages  int       `json:"messages"`   // stored messages, client and AI turns
	Created   time.Time `json:"created_at"`
	// Metadata is the metadata the session was created with (null when
	// none).
	Metadata json.RawMessage `json:"metadata"`
}

func (sess *session) public() Session {
	out := Session{ID: sess.id, Owner: sess.owner, Type: sess.typ, HumanID: sess.humanID, Live: sess.live(),
		EndReason: sess.endReason, Sockets: len(sess.conns), Messages: sess.messages, Created: sess.created,
		Metadata: sess.metadata}
	for _, a := range sess.agents {
		out.AgentIDs = append(out.AgentIDs, a.id)
	}
	return out
}

// AddUser adds (or replaces) a user who can log in.
func (s *Server) AddUser(name, password string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users[name] = &user{name: name, password: password}
}

// SetUserActive marks a user active or inactive (login answers 401
// "User is inactive"). It reports false for an unknown user.
func (s *Server) SetUserActive(name string, active bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[name]
	if u == nil {
		return false
	}
	u.inactive = !active
	return true
}

// Token returns a fresh token for a user without calling the login
// route (no rate limit), or "" for an unknown user.
func (s *Server) Token(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.users[name] == nil {
		return ""
	}
	return s.issueTokenLocked(name, time.Now())
}

// ExpireTokens makes every token issued to a user so far fail
// verification as an expired one would: REST calls get 401 and
// handshakes 403. Sockets already open stay open, as on the platform
// (the token is checked at the handshake only). It returns how many
// tokens it expired; a login afterwards gets a working token.
func (s *Server) ExpireTokens(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, t := range s.issued {
		if _, gone := s.expiredJTI[t.jti]; t.user == name && !gone {
			s.expiredJTI[t.jti] = struct{}{}
			n++
		}
	}
	return n
}

// SetProviderKey makes a provider's API key present (true, the
// default) or missing: sessions/create naming it answers 500 "API key
// not found for provider: X".
func (s *Server) SetProviderKey(provider string, present bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.missingKeys[provider] = !present
}

// Sessions returns every session kept, oldest first.
func (s *Server) Sessions() []Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Session, 0, len(s.sessionOrder))
	for _, sess := range s.sessionOrder {
		out = append(out, sess.public())
	}
	return out
}

// Session returns one session.
func (s *Server) Session(id string) (Session, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sess := s.sessions[id]; sess != nil {
		return sess.public(), true
	}
	return Session{}, false
}

// Sockets returns the number of open sockets of a session.
func (s *Server) Sockets(id string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sess := s.sessions[id]; sess != nil {
		return len(sess.conns)
	}
	return 0
}

// Received returns the valid frames clients sent on a session's
// sockets (pings included), oldest first. Frames refused as invalid are
// not kept.
func (s *Server) Received(id string) []Frame {
	return s.frames(id, func(sess *session) []Frame { return sess.received })
}

// Broadcasts returns the frames broadcast to a session's sockets (all
// but pings, error answers and raw frames), oldest first.
func (s *Server) Broadcasts(id string) []Frame {
	return s.frames(id, func(sess *session) []Frame { return sess.broadcasts })
}

func (s *Server) frames(id string, pick func(*session) []Frame) []Frame {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sess := s.sessions[id]; sess != nil {
		return slices.Clone(pick(sess))
	}
	return nil
}

// conns returns the sockets of a session, or of every session for "".
func (s *Server) connsLocked(id string) []*conn {
	var out []*conn
	for _, sess := range s.sessionOrder {
		if id == "" || sess.id == id {
			for c := range sess.conns {
				out = append(out, c)
			}
		}
	}
	return out
}

// DropSockets closes the sockets of a session ("" for every session)
// without a close frame, like a network failure. It returns how many.
func (s *Server) DropSockets(id string) int {
	s.mu.Lock()
	conns := s.connsLocked(id)
	for _, c := range conns {
		delete(c.sess.conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.closeNow()
	}
	return len(conns)
}

// CloseSockets closes the sockets of a session ("" for every session)
// with a close frame, e.g. 4000 (server error) or 1011 (middleware
// error), after the frames already queued. It returns how many.
func (s *Server) CloseSockets(id string, code websocket.StatusCode, reason string) int {
	s.mu.Lock()
	conns := s.connsLocked(id)
	s.mu.Unlock()
	for _, c := range conns {
		c.shutdown(code, reason)
	}
	return len(conns)
}

// SendRaw writes data as one text frame to every socket of a session,
// e.g. a frame that is not JSON or has an unknown type.
func (s *Server) SendRaw(id, data string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.connsLocked(id) {
		c.enqueue([]byte(data))
	}
}

// SendSystem broadcasts a system notice (one of the Notice* texts, or
// any text) to a session's sockets.
func (s *Server) SendSystem(id, text string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sess := s.sessions[id]; sess != nil {
		s.systemLocked(sess, text)
	}
}

// ForceCooldown puts every AI agent of a session in cooldown for d: the
// next message to one is answered with a cooldown frame carrying the
// seconds left.
func (s *Server) ForceCooldown(id string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sess := s.sessions[id]; sess != nil {
		for _, a := range sess.agents {
			a.cooldownUntil = time.Now().Add(d)
		}
	}
}

// ForceStop makes the session's first AI agent end its conversation
// now, as at max turns: a stop frame is broadcast and later messages to
// it get no answer.
func (s *Server) ForceStop(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.sessions[id]
	if sess == nil {
		return
	}
	a, partner := sess.agents[0], sess.humanID
	if len(sess.agents) > 1 {
		partner = sess.agents[1].id
	}
	a.ended[partner] = true
	s.broadcastLocked(sess, stopFrame(a, partner))
}

// EndSession ends a session as the lifetime or inactivity cleanup does:
// notice is broadcast ("" for none), sockets stay open, the REST routes
// answer 404 and later messages get [NoticeInactiveNew].
func (s *Server) EndSession(id, notice string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sess := s.sessions[id]; sess != nil {
		s.endSessionLocked(sess, endExpired, notice)
	}
}

// ClearSessionData empties a session's stored data, so handshakes get
// close code 4004 (an HTTP 403 by default).
func (s *Server) ClearSessionData(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sess := s.sessions[id]; sess != nil {
		sess.dataMissing = true
	}
}

// RejectHandshakes refuses the next n handshakes as a failed check does
// (HTTP 403), whatever their token and session. n <= 0 cancels.
func (s *Server) RejectHandshakes(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rejectShakes = max(n, 0)
}

// StallPings stops (true) or resumes (false) the JSON pings. Stalled
// pings do not refresh the session's activity either.
func (s *Server) StallPings(stall bool) { s.stallPings.Store(stall) }
