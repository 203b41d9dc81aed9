package bandemu

import (
	"slices"
)

// The Go API tests drive the platform with. Methods taking ids return a
// zero value (or false) when an id is unknown.

// AddUser creates a human user with a handle derived from name.
func (s *Server) AddUser(name string) User {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addUserLocked(name).User
}

// AddRoom creates a room with the default agent (as owner) and the
// given participants (user or agent ids; unknown ids are skipped). Each
// agent in it gets room_added on agent_rooms when connected.
func (s *Server) AddRoom(title string, participantIDs ...string) Room {
	return s.AddRoomFor(s.opts.AgentID, title, participantIDs...)
}

// AddRoomFor is AddRoom with another owning agent (see AddAgent).
func (s *Server) AddRoomFor(agentID, title string, participantIDs ...string) Room {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.agents[agentID] == nil {
		return Room{}
	}
	r := s.newRoomLocked(title, "")
	s.addParticipantLocked(r, agentID, "owner")
	for _, id := range participantIDs {
		s.addParticipantLocked(r, id, "member")
	}
	return r.public()
}

// Rooms returns every room, oldest first.
func (s *Server) Rooms() []Room {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Room, 0, len(s.roomOrder))
	for _, r := range s.roomOrder {
		out = append(out, r.public())
	}
	return out
}

// AddParticipant adds a user or agent to a room, pushing
// participant_added (and room_added to an added agent).
func (s *Server) AddParticipant(roomID, participantID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rooms[roomID]
	if r == nil {
		return false
	}
	_, added := s.addParticipantLocked(r, participantID, "member")
	return added
}

// RemoveParticipant removes a user or agent from a room, pushing
// participant_removed (and room_removed to a removed agent).
func (s *Server) RemoveParticipant(roomID, participantID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rooms[roomID]
	if r == nil {
		return false
	}
	_, removed := s.removeParticipantLocked(r, participantID)
	return removed
}

// RemoveAgentFromRoom removes the default agent from a room.
func (s *Server) RemoveAgentFromRoom(roomID string) bool {
	return s.RemoveParticipant(roomID, s.opts.AgentID)
}

// DeleteRoom deletes a room: room_deleted on room_participants and
// room_removed on agent_rooms for each agent in it. Its REST paths then
// answer 404.
func (s *Server) DeleteRoom(roomID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rooms[roomID]
	if r == nil {
		return false
	}
	s.deleteRoomLocked(r)
	return true
}

// PostUserMessage posts a text message from a user that mentions every
// agent in the room, so each connected agent that joined chat_room gets
// message_created. The content is stored as given.
func (s *Server) PostUserMessage(roomID, userID, content string) Message {
	s.mu.Lock()
	var ids []string
	if r := s.rooms[roomID]; r != nil {
		for _, p := range r.participants {
			if p.kind == "Agent" {
				ids = append(ids, p.id)
			}
		}
	}
	s.mu.Unlock()
	return s.PostUserMessageMentioning(roomID, userID, content, ids...)
}

// PostUserMessageNoMention posts a text message that mentions nobody:
// it is stored but never pushed and never appears in /messages/next.
func (s *Server) PostUserMessageNoMention(roomID, userID, content string) Message {
	return s.PostUserMessageMentioning(roomID, userID, content)
}

// PostUserMessageMentioning posts a text message from a user (or any
// participant) mentioning exactly the given participants.
func (s *Server) PostUserMessageMentioning(roomID, userID, content string, mentionIDs ...string) Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rooms[roomID]
	if r == nil || !r.has(userID) {
		return Message{}
	}
	var ms []Mention
	for _, id := range mentionIDs {
		if name, handle, _, ok := s.entityLocked(id); ok && r.has(id) {
			ms = append(ms, Mention{ID: id, Name: name, Handle: handle, Kind: "mention"})
		}
	}
	return s.addMessageLocked(r, Message{Content: content, SenderID: userID, MessageType: "text", Mentions: ms}).clone()
}

// Messages returns every message of a room (text and events), in order.
func (s *Server) Messages(roomID string) []Message {
	return s.messagesWhere(roomID, func(*messageState) bool { return true })
}

// AgentMessages returns the text messages sent by agents in a room, in
// order (check SenderID when several agents share the room).
func (s *Server) AgentMessages(roomID string) []Message {
	return s.messagesWhere(roomID, func(m *messageState) bool {
		return m.SenderType == "Agent" && m.MessageType == "text"
	})
}

// AgentEvents returns the events (tool_call, thought, ...) posted by
// agents in a room, in order.
func (s *Server) AgentEvents(roomID string) []Message {
	return s.messagesWhere(roomID, func(m *messageState) bool {
		return m.SenderType == "Agent" && m.MessageType != "text"
	})
}

// Pending returns the messages the default agent has not processed in a
// room, oldest first: what /messages/next would walk through.
func (s *Server) Pending(roomID string) []Message {
	return s.PendingFor(s.opts.AgentID, roomID)
}

// PendingFor is Pending for any agent.
func (s *Server) PendingFor(agentID, roomID string) []Message {
	return s.messagesWhere(roomID, func(m *messageState) bool {
		return m.addressedTo(agentID) && m.statusFor(agentID) != StatusProcessed
	})
}

func (s *Server) messagesWhere(roomID string, keep func(*messageState) bool) []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rooms[roomID]
	if r == nil {
		return nil
	}
	var out []Message
	for _, m := range r.messages {
		if keep(m) {
			out = append(out, m.Message.clone())
		}
	}
	return out
}

// Status returns the default agent's processing status of a message
// (a Status* constant, "" for an unknown id) and its attempts.
func (s *Server) Status(messageID string) (status string, attempts []Attempt) {
	return s.StatusFor(s.opts.AgentID, messageID)
}

// StatusFor is Status for any agent.
func (s *Server) StatusFor(agentID, messageID string) (status string, attempts []Attempt) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.messages[messageID]
	if m == nil {
		return "", nil
	}
	if d := m.deliveries[agentID]; d != nil {
		return d.status, slices.Clone(d.attempts)
	}
	return StatusPending, nil
}

// Working reports the default agent's last activity report in a room
// (POST .../activity).
func (s *Server) Working(roomID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.rooms[roomID]; r != nil {
		return r.working[s.opts.AgentID]
	}
	return false
}

// Requests returns the HTTP requests answered so far, oldest first.
func (s *Server) Requests() []RequestRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// ClearRequests forgets the recorded requests.
func (s *Server) ClearRequests() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = nil
}

// Connections returns the number of live agent sockets.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Supersedes returns how many sockets were superseded since the server
// started: by a newer socket of the same agent, or by [Server.Supersede].
func (s *Server) Supersedes() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.correlation // one correlation id per supersede
}

// Connected reports whether the agent has a live socket.
func (s *Server) Connected(agentID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.agents[agentID]
	return a != nil && a.conn != nil
}

// ContactRequest makes a user (or agent) send a contact request to the
// default agent, pushing contact_request_received on agent_contacts.
func (s *Server) ContactRequest(fromID, message string) ContactRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, _, _, ok := s.entityLocked(fromID); !ok || fromID == s.opts.AgentID {
		return ContactRequest{}
	}
	return s.newContactRequestLocked(fromID, s.opts.AgentID, message).ContactRequest
}

// ResolveContactRequest settles a pending request as the other party
// would: status is approved, rejected or cancelled. Approval makes the
// two contacts (contact_added).
func (s *Server) ResolveContactRequest(requestID, status string) bool {
	if status != "approved" && status != "rejected" && status != "cancelled" {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, cr := range s.contactRequests {
		if cr.ID == requestID && cr.Status == "pending" {
			s.setRequestStatusLocked(cr, status)
			return true
		}
	}
	return false
}

// ContactRequests returns every contact request, oldest first.
func (s *Server) ContactRequests() []ContactRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]ContactRequest, 0, len(s.contactRequests))
	for _, cr := range s.contactRequests {
		out = append(out, cr.ContactRequest)
	}
	return out
}

// Contacts returns the default agent's contacts.
func (s *Server) Contacts() []Contact {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Contact
	for _, c := range s.contactsOfLocked(s.opts.AgentID) {
		out = append(out, Contact{ID: c.id, PeerID: c.peerID, InsertedAt: c.insertedAt})
	}
	return out
}

// RotateKey replaces agentID's API key with key (as an operator rotating
// it): calls with the old key are refused with 401 from now on. APIKey
// keeps returning the key the server started with.
func (s *Server) RotateKey(agentID, key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.agents[agentID]
	if a == nil || key == "" || s.keys[key] != nil {
		return false
	}
	delete(s.keys, a.APIKey)
	a.APIKey = key
	s.keys[key] = a
	return true
}
