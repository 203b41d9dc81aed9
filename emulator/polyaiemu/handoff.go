package polyaiemu

// Handoff flows (polyai.md §11), driven by tests. Each method returns
// false when the session is unknown, ended, or not in the state the
// step needs (named in its doc).

// LiveAgent is the human agent a session is handed to.
type LiveAgent struct {
	ID        string
	Name      string
	AvatarURL string
}

// ServerHandoff describes a server-managed handoff.
type ServerHandoff struct {
	// Queue is the queue_name. Default: "support".
	Queue string
	// QueueUpdates is how many HANDOFF_QUEUE_STATUS events come before
	// the live agent joins (positions QueueUpdates..1).
	QueueUpdates int
	// Agent joins at once (LIVE_AGENT_JOINED) when its ID is set;
	// otherwise the session waits in AgentQueued for [Server.LiveAgentJoin],
	// [Server.HandoffFailed] or [Server.HandoffTimeout].
	Agent LiveAgent
}

// Handoff runs a server-managed handoff in a session the PolyAI agent
// holds: POLY_AGENT_TRIGGERED_HANDOFF, POLY_AGENT_LEFT,
// HANDOFF_ACCEPTED, HANDOFF_QUEUE_STATUS × QueueUpdates and, with an
// agent, LIVE_AGENT_JOINED. User messages then go to the live agent
// (echoed, never answered by the emulator).
func (s *Server) Handoff(sessionID string, h ServerHandoff) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.activeLocked(sessionID)
	if sess == nil || sess.agent != AgentPolyAI {
		return false
	}
	if h.Queue == "" {
		h.Queue = "support"
	}
	s.emitLocked(sess, TypeAgentTriggeredHandoff, []byte("{}"), nil, true, nil)
	s.emitLocked(sess, TypeAgentLeft, []byte("{}"), nil, true, nil)
	s.emitLocked(sess, TypeHandoffAccepted, mustJSON(obj{"queue_name": h.Queue}), nil, true, nil)
	sess.agent = AgentQueued
	for i := h.QueueUpdates; i > 0; i-- {
		s.queueStatusLocked(sess, h.Queue, i, 30*i)
	}
	if h.Agent.ID != "" {
		s.liveJoinLocked(sess, h.Agent)
	}
	return true
}

// QueueStatus sends HANDOFF_QUEUE_STATUS in a queued session.
func (s *Server) QueueStatus(sessionID, queue string, position, waitSeconds int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.activeLocked(sessionID)
	if sess == nil || sess.agent != AgentQueued {
		return false
	}
	s.queueStatusLocked(sess, queue, position, waitSeconds)
	return true
}

func (s *Server) queueStatusLocked(sess *session, queue string, position, wait int) {
	s.emitLocked(sess, TypeHandoffQueueStatus, mustJSON(obj{"queue_name": queue,
		"position_in_queue": position, "estimated_wait_seconds": wait}), nil, true, nil)
}

// LiveAgentJoin makes a live agent join a queued session.
func (s *Server) LiveAgentJoin(sessionID string, a LiveAgent) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.activeLocked(sessionID)
	if sess == nil || sess.agent != AgentQueued || a.ID == "" {
		return false
	}
	s.liveJoinLocked(sess, a)
	return true
}

func (s *Server) liveJoinLocked(sess *session, a LiveAgent) {
	sess.agent, sess.liveAgent = AgentLive, a
	s.emitLocked(sess, TypeLiveAgentJoined, mustJSON(obj{"agent": obj{"id": a.ID,
		"name": a.Name, "avatar_url": a.AvatarURL}}), nil, true, nil)
}

// LiveAgentTyping sends a transient LIVE_AGENT_TYPING (STARTED or
// STOPPED) in a session a live agent holds.
func (s *Server) LiveAgentTyping(sessionID string, started bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.activeLocked(sessionID)
	if sess == nil || sess.agent != AgentLive {
		return false
	}
	state := "TYPING_STATE_STOPPED"
	if started {
		state = "TYPING_STATE_STARTED"
	}
	s.emitLocked(sess, TypeLiveAgentTyping, mustJSON(obj{"state": state,
		"agent_id": sess.liveAgent.ID}), nil, false, nil)
	return true
}

// LiveAgentSay sends LIVE_AGENT_MESSAGE (always whole, never chunked)
// in a session a live agent holds.
func (s *Server) LiveAgentSay(sessionID, text string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.activeLocked(sessionID)
	if sess == nil || sess.agent != AgentLive {
		return false
	}
	s.emitLocked(sess, TypeLiveAgentMessage, mustJSON(obj{"message_id": newID(),
		"agent_id": sess.liveAgent.ID, "text": text, "attachments": []Attachment{},
		"response_suggestions": []obj{}}), nil, true, nil)
	return true
}

// LiveAgentLeave ends a live conversation as documented: LIVE_AGENT_LEFT,
// then SESSION_END REASON_NATURAL_END.
func (s *Server) LiveAgentLeave(sessionID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.activeLocked(sessionID)
	if sess == nil || sess.agent != AgentLive {
		return false
	}
	s.emitLocked(sess, TypeLiveAgentLeft, []byte("{}"), nil, true, nil)
	s.endLocked(sess, ReasonNaturalEnd)
	return true
}

// ClientHandoff runs a client-managed handoff in a session the PolyAI
// agent holds: POLY_AGENT_TRIGGERED_HANDOFF, CLIENT_HANDOFF_REQUIRED
// {reason, queue_name}, POLY_AGENT_LEFT. The session stays open with
// nobody answering (AgentLeft). reason defaults to "AGENT_DECISION".
func (s *Server) ClientHandoff(sessionID, reason, queue string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.activeLocked(sessionID)
	if sess == nil || sess.agent != AgentPolyAI {
		return false
	}
	if reason == "" {
		reason = "AGENT_DECISION"
	}
	s.emitLocked(sess, TypeAgentTriggeredHandoff, []byte("{}"), nil, true, nil)
	s.emitLocked(sess, TypeClientHandoffRequired, mustJSON(obj{"reason": reason, "queue_name": queue}), nil, true, nil)
	s.emitLocked(sess, TypeAgentLeft, []byte("{}"), nil, true, nil)
	sess.agent = AgentLeft
	return true
}

// HandoffFailed sends HANDOFF_FAILED in a queued session, which is then
// left with nobody answering (AgentLeft); a REQUEST_POLY_AGENT_JOIN
// brings the PolyAI agent back.
func (s *Server) HandoffFailed(sessionID string) bool {
	return s.handoffOver(sessionID, TypeHandoffFailed)
}

// HandoffTimeout is HandoffFailed with HANDOFF_TIMEOUT.
func (s *Server) HandoffTimeout(sessionID string) bool {
	return s.handoffOver(sessionID, TypeHandoffTimeout)
}

func (s *Server) handoffOver(sessionID, typ string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.activeLocked(sessionID)
	if sess == nil || sess.agent != AgentQueued {
		return false
	}
	s.emitLocked(sess, typ, []byte("{}"), nil, true, nil)
	sess.agent = AgentLeft
	return true
}
