package polyaiemu

import (
	"slices"
	"time"
)

// SessionOptions are the fields a session is created with (polyai.md §3).
type SessionOptions struct {
	// Streaming makes agent replies arrive as chunks.
	Streaming bool
	// Platform is web (default), ios, android, ios-web, android-web or
	// custom.
	Platform string
	// DeviceType is the undocumented field the SDKs send; kept as given.
	DeviceType string
}

// AgentState says who holds the conversation of a session.
type AgentState string

// The agent states of a session.
const (
	AgentNone   AgentState = "none"   // nobody joined yet (send REQUEST_POLY_AGENT_JOIN)
	AgentPolyAI AgentState = "polyai" // the PolyAI agent answers
	AgentQueued AgentState = "queued" // handoff accepted, waiting for a live agent
	AgentLive   AgentState = "live"   // a live agent holds the conversation
	AgentLeft   AgentState = "left"   // the PolyAI agent left and nobody took over
)

// session is one PolyAI session. Every field is guarded by Server.mu.
// An idle session costs this struct, its history and no goroutine.
type session struct {
	id, token  string
	opts       SessionOptions
	created    time.Time
	lastActive time.Time // last inbound event or handshake

	seq     int64
	history []*event // journaled events, sequence order

	conns     []*wsConn
	agent     AgentState
	liveAgent LiveAgent
	ended     bool
	endReason string

	messages   []UserMessage
	seen       map[string]struct{} // client_event_ids received, allocated on first use
	duplicates int
	typing     []string // USER_TYPING states received
	handshakes int      // every upgrade naming this session
	connects   int      // upgrades that succeeded
	// firstOpen and firstBeat are the times of the first upgrade that
	// succeeded and of the first HEARTBEAT received.
	firstOpen, firstBeat time.Time

	// Fault knobs (faults.go).
	dropUser    int    // silently drop this many USER_MESSAGEs
	refuseUser  int    // refuse this many USER_MESSAGEs with a SYSTEM_MESSAGE error
	refuseMsg   string // the error's message
	failReplies int    // answer this many with a SYSTEM_MESSAGE error
	failMessage string // "" = the default for the event
	dropAfter   int    // drop the sockets after this many journaled events
}

// newSessionLocked creates a session owned by token, with SESSION_START
// as its first journaled event; nil when Options.MaxSessions is reached.
func (s *Server) newSessionLocked(token string, so SessionOptions) *session {
	if len(s.sessions) >= s.opts.MaxSessions {
		return nil
	}
	if so.Platform == "" {
		so.Platform = "web"
	}
	now := time.Now()
	sess := &session{id: newID(), token: token, opts: so, created: now, lastActive: now, agent: AgentNone}
	s.sessions[sess.id] = sess
	s.order = append(s.order, sess)
	s.live[sess] = struct{}{}
	caps := obj{"streaming": so.Streaming, "max_message_size_bytes": s.opts.MaxMessageSize,
		"max_reconnect_attempts":     s.opts.MaxReconnectAttempts,
		"heartbeat_interval_seconds": int(s.opts.HeartbeatInterval / time.Second)}
	s.emitLocked(sess, TypeSessionStart, mustJSON(obj{"capabilities": caps}), nil, true, nil)
	return sess
}

// emitLocked creates a server event and writes it to one socket (only)
// or to every socket of the session. A journaled event gets the next
// sequence and joins the history; a transient one (sequence null) does
// not. It returns nil when nothing was emitted.
func (s *Server) emitLocked(sess *session, typ string, payload, meta []byte, journal bool, only *wsConn) *event {
	if sess.ended {
		return nil
	}
	if journal && len(sess.history) >= s.opts.MaxHistory && typ != TypeSessionEnd {
		s.emitLocked(sess, TypeSystemMessage, mustJSON(obj{"level": LevelError,
			"message": "Session history is full"}), nil, false, nil)
		s.endLocked(sess, ReasonNaturalEnd)
		return nil
	}
	e := &event{id: newID(), ts: s.nowLocked(), typ: typ, payload: payload, meta: meta}
	if journal {
		sess.seq++
		e.seq = sess.seq
		sess.history = append(sess.history, e)
	}
	data := e.wire()
	if only != nil {
		only.enqueue(data)
	} else {
		for _, c := range sess.conns {
			c.enqueue(data)
		}
	}
	if journal && sess.dropAfter > 0 {
		sess.dropAfter--
		if sess.dropAfter == 0 {
			for _, c := range slices.Clone(sess.conns) {
				c.push(outFrame{drop: true}) // after the frames already queued
				s.detachLocked(c)
			}
		}
	}
	return e
}

// endLocked journals SESSION_END with reason, closes the session's
// sockets (1000) once it is written and forgets the session as live.
// Nothing follows SESSION_END (polyai.md §8).
func (s *Server) endLocked(sess *session, reason string) {
	if sess.ended {
		return
	}
	s.emitLocked(sess, TypeSessionEnd, mustJSON(obj{"reason": reason}), nil, true, nil)
	sess.ended, sess.endReason = true, reason
	delete(s.live, sess)
	for _, c := range slices.Clone(sess.conns) {
		c.shutdown(1000, "session ended")
		s.detachLocked(c)
	}
	s.log.Debug().Str("session_id", sess.id).Str("reason", reason).Msg("session ended")
}

// replayLocked queues the history after cursor on c as EVENT_BATCH
// frames of at most Options.MaxBatchEvents events. The first batch
// always starts with SESSION_START, whatever the cursor (polyai.md §4.3).
func (s *Server) replayLocked(sess *session, c *wsConn, cursor int64) {
	events := []*event{sess.history[0]}
	for _, e := range sess.history[1:] {
		if e.seq > cursor {
			events = append(events, e)
		}
	}
	for len(events) > 0 {
		n := min(len(events), s.opts.MaxBatchEvents)
		c.enqueue(batch(newID(), s.nowLocked(), events[:n], s.opts.PlainBatchEvents))
		events = events[n:]
	}
}

// detachLocked forgets c as a socket of its session.
func (s *Server) detachLocked(c *wsConn) {
	if sess := c.sess; sess != nil {
		if i := slices.Index(sess.conns, c); i >= 0 {
			sess.conns = slices.Delete(sess.conns, i, i+1)
		}
	}
	delete(s.conns, c)
}

// detachAllLocked detaches the sockets of one session, or of every
// session when sessionID is "", and returns them.
func (s *Server) detachAllLocked(sessionID string) []*wsConn {
	var out []*wsConn
	for c := range s.conns {
		if sessionID == "" || c.sess.id == sessionID {
			out = append(out, c)
		}
	}
	for _, c := range out {
		s.detachLocked(c)
	}
	return out
}

// activeLocked returns the session with id if it exists and has not
// ended.
func (s *Server) activeLocked(id string) *session {
	sess := s.sessions[id]
	if sess == nil || sess.ended {
		return nil
	}
	return sess
}
