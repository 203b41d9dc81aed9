package polyaiemu

import (
	"errors"
	"slices"
	"time"

	"github.com/bridgeworks/bridge/emulator/emuhttp"
)

// The Go API tests drive the platform with and inspect it through.
// Methods taking a session id return a zero value (or false) when the
// id is unknown.

// SessionInfo describes a session.
type SessionInfo struct {
	ID    string
	Token string // the access token the session is bound to
	SessionOptions
	Created    time.Time
	LastActive time.Time // last inbound event or handshake
	Agent      AgentState
	LiveAgent  LiveAgent // set while Agent is AgentLive
	Ended      bool
	EndReason  string
	Sockets    int // open sockets
	Handshakes int // upgrade attempts naming the session, refused ones included
	Connects   int // upgrades that succeeded
	// FirstOpen and FirstHeartbeat are when the first upgrade succeeded
	// and the first HEARTBEAT arrived (zero before): the client's
	// heartbeat phase.
	FirstOpen, FirstHeartbeat time.Time
	LastSeq                   int64 // sequence of the newest journaled event
	Messages                  int   // USER_MESSAGEs received
	Duplicates                int   // of which repeated an earlier client_event_id
}

func (sess *session) info() SessionInfo {
	return SessionInfo{ID: sess.id, Token: sess.token, SessionOptions: sess.opts,
		Created: sess.created, LastActive: sess.lastActive, Agent: sess.agent,
		LiveAgent: sess.liveAgent, Ended: sess.ended, EndReason: sess.endReason,
		Sockets: len(sess.conns), Handshakes: sess.handshakes, Connects: sess.connects,
		LastSeq: sess.seq, Messages: len(sess.messages), Duplicates: sess.duplicates,
		FirstOpen: sess.firstOpen, FirstHeartbeat: sess.firstBeat}
}

// NewAccessToken mints an access token as POST /api/v1/access-token
// does.
func (s *Server) NewAccessToken() (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	jwt, ok := s.mintLocked()
	if !ok {
		return "", errors.New("polyaiemu: access token limit reached")
	}
	return jwt, nil
}

// CreateSession mints a token and creates a session with it, as a
// client doing both REST calls would. The result carries both ids.
func (s *Server) CreateSession(so SessionOptions) (SessionInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	jwt, ok := s.mintLocked()
	if !ok {
		return SessionInfo{}, errors.New("polyaiemu: access token limit reached")
	}
	sess := s.newSessionLocked(jwt, so)
	if sess == nil {
		return SessionInfo{}, errors.New("polyaiemu: session limit reached")
	}
	return sess.info(), nil
}

// Session describes one session.
func (s *Server) Session(id string) (SessionInfo, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.sessions[id]
	if sess == nil {
		return SessionInfo{}, false
	}
	return sess.info(), true
}

// Sessions describes every session, oldest first.
func (s *Server) Sessions() []SessionInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]SessionInfo, 0, len(s.order))
	for _, sess := range s.order {
		out = append(out, sess.info())
	}
	return out
}

// History returns the journaled events of a session in sequence order,
// as a replay from cursor 0 would carry them.
func (s *Server) History(id string) []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.sessions[id]
	if sess == nil {
		return nil
	}
	out := make([]Event, 0, len(sess.history))
	for _, e := range sess.history {
		out = append(out, e.public())
	}
	return out
}

// UserMessages returns the USER_MESSAGEs a session received and echoed,
// oldest first (dropped ones are not there).
func (s *Server) UserMessages(id string) []UserMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.sessions[id]
	if sess == nil {
		return nil
	}
	return slices.Clone(sess.messages)
}

// Typing returns the USER_TYPING states a session received, oldest
// first (the last 100).
func (s *Server) Typing(id string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.sessions[id]
	if sess == nil {
		return nil
	}
	return slices.Clone(sess.typing)
}

// Handshakes returns the recorded upgrade attempts, oldest first (the
// last Options.MaxHandshakeLog).
func (s *Server) Handshakes() []HandshakeRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.handshakes)
}

// ArrivalStats summarises requests of one kind: their total, the
// busiest one- and three-second windows, the first and the last.
type ArrivalStats = emuhttp.ArrivalStats

// DialStats summarises the socket upgrade requests received, refused
// ones included: what a platform's connection rate limit would count.
func (s *Server) DialStats() ArrivalStats { return s.dials.Stats() }

// HeartbeatStats summarises the HEARTBEATs received over all sessions.
func (s *Server) HeartbeatStats() ArrivalStats { return s.beats.Stats() }

// BusiestHeartbeats is the most HEARTBEATs received at or after since
// within any window of length w, over all sessions: how well the
// clients spread them.
func (s *Server) BusiestHeartbeats(since time.Time, w time.Duration) int {
	return s.beats.Busiest(since, w)
}

// Connections returns how many sockets are open, over all sessions.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Say makes the PolyAI agent say m in a session: POLY_AGENT_THINKING,
// then the message (chunks when the session streams), whoever holds the
// conversation.
func (s *Server) Say(sessionID string, m AgentMessage) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.activeLocked(sessionID)
	if sess == nil {
		return false
	}
	s.sayLocked(sess, m)
	return true
}

// ChangeLanguage journals LANGUAGE_CHANGED with a BCP-47 code.
func (s *Server) ChangeLanguage(sessionID, code string) bool {
	return s.emit(sessionID, TypeLanguageChanged, obj{"language_code": code})
}

// EndSession ends a session with reason (ReasonUserEnd,
// ReasonUserAbandoned, ReasonNaturalEnd, or any other REASON_ value):
// SESSION_END, then the sockets close (1000).
func (s *Server) EndSession(sessionID, reason string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.activeLocked(sessionID)
	if sess == nil {
		return false
	}
	s.endLocked(sess, reason)
	return true
}

// emit journals one event with payload in a live session.
func (s *Server) emit(sessionID, typ string, payload obj) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.activeLocked(sessionID)
	if sess == nil {
		return false
	}
	return s.emitLocked(sess, typ, mustJSON(payload), nil, true, nil) != nil
}
