package bandemu

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"
)

// The domain state. Everything here is guarded by Server.mu; functions
// whose name ends in Locked must be called with it held.

type agentState struct {
	Agent
	conn     *wsConn // the live socket, nil when offline
	contacts []*contactState
}

type userState struct {
	User
}

type participant struct {
	id         string
	kind       string // "User" or "Agent"
	role       string // owner, admin, member
	insertedAt time.Time
}

type roomState struct {
	id, title, taskID   string
	insertedAt, updated time.Time
	participants        []participant
	messages            []*messageState
	working             map[string]bool // agent id -> last activity report
	workingAt           map[string]time.Time
}

type messageState struct {
	Message
	seq        int64
	deliveries map[string]*delivery // agent id -> processing state
}

type delivery struct {
	status   string
	attempts []Attempt
}

type contactState struct {
	id, peerID string
	insertedAt time.Time
}

type contactRequestState struct {
	ContactRequest
}

func newID() string {
	a, b := rand.Uint64(), rand.Uint64()
	// Version 4, RFC 4122 variant.
	a = a&^(0xf<<12) | 0x4<<12
	b = b&^(0x3<<62) | 0x2<<62
	return fmt.Sprintf("%08x-%04x-%04x-%04x-%012x",
		a>>32, (a>>16)&0xffff, a&0xffff, b>>48, b&0xffffffffffff)
}

// nowLocked returns a UTC time, truncated to microseconds (the wire
// precision), strictly after every time it returned before.
func (s *Server) nowLocked() time.Time {
	t := time.Now().UTC().Truncate(time.Microsecond)
	if !t.After(s.lastTime) {
		t = s.lastTime.Add(time.Microsecond)
	}
	s.lastTime = t
	return t
}

func (s *Server) uniqueHandleLocked(base string) string {
	h := base
	for i := 2; ; i++ {
		if _, taken := s.handles[h]; !taken {
			return h
		}
		h = base + "-" + strconv.Itoa(i)
	}
}

func (s *Server) addAgentLocked(a Agent) *agentState {
	a.InsertedAt = s.nowLocked()
	a.Handle = s.uniqueHandleLocked(a.Handle)
	st := &agentState{Agent: a}
	s.agents[a.ID] = st
	s.agentOrder = append(s.agentOrder, st)
	s.keys[a.APIKey] = st
	s.handles[a.Handle] = a.ID
	return st
}

func (s *Server) addUserLocked(name string) *userState {
	u := &userState{User: User{
		ID:         newID(),
		Name:       name,
		Handle:     s.uniqueHandleLocked(slug(name)),
		InsertedAt: s.nowLocked(),
	}}
	s.users[u.ID] = u
	s.userOrder = append(s.userOrder, u)
	s.handles[u.Handle] = u.ID
	return u
}

// entityLocked describes a user or agent by id.
func (s *Server) entityLocked(id string) (name, handle, kind string, ok bool) {
	if a, found := s.agents[id]; found {
		return a.Name, a.Handle, "Agent", true
	}
	if u, found := s.users[id]; found {
		return u.Name, u.Handle, "User", true
	}
	return "", "", "", false
}

func (r *roomState) participantIndex(id string) int {
	return slices.IndexFunc(r.participants, func(p participant) bool { return p.id == id })
}

func (r *roomState) has(id string) bool { return r.participantIndex(id) >= 0 }

func (r *roomState) public() Room {
	ids := make([]string, len(r.participants))
	for i, p := range r.participants {
		ids[i] = p.id
	}
	return Room{ID: r.id, Title: r.title, TaskID: r.taskID, InsertedAt: r.insertedAt,
		UpdatedAt: r.updated, ParticipantIDs: ids}
}

// agentRoomLocked returns the room when it exists and the agent is in
// it, the condition for every /agent/chats/{id}/... call.
func (s *Server) agentRoomLocked(roomID, agentID string) *roomState {
	r := s.rooms[roomID]
	if r == nil || !r.has(agentID) {
		return nil
	}
	return r
}

func (s *Server) newRoomLocked(title, taskID string) *roomState {
	now := s.nowLocked()
	r := &roomState{id: newID(), title: title, taskID: taskID, insertedAt: now, updated: now,
		working: map[string]bool{}, workingAt: map[string]time.Time{}}
	s.rooms[r.id] = r
	s.roomOrder = append(s.roomOrder, r)
	return r
}

// addParticipantLocked adds id to the room and pushes
// participant_added to the room's agents and room_added to the new
// participant when it is an agent. It reports false when id is unknown
// or already there.
func (s *Server) addParticipantLocked(r *roomState, id, role string) (participant, bool) {
	_, _, kind, ok := s.entityLocked(id)
	if !ok || r.has(id) {
		return participant{}, false
	}
	p := participant{id: id, kind: kind, role: role, insertedAt: s.nowLocked()}
	r.participants = append(r.participants, p)
	payload := mustJSON(s.participantEventLocked(p))
	for _, q := range r.participants {
		if q.kind == "Agent" && q.id != id {
			s.pushLocked(q.id, "room_participants:"+r.id, "participant_added", payload)
		}
	}
	if kind == "Agent" {
		s.pushLocked(id, "agent_rooms:"+id, "room_added", mustJSON(roomJSON(r)))
	}
	return p, true
}

// removeParticipantLocked removes id and pushes participant_removed to
// the room's agents (the removed one included) and room_removed to the
// removed agent.
func (s *Server) removeParticipantLocked(r *roomState, id string) (participant, bool) {
	i := r.participantIndex(id)
	if i < 0 {
		return participant{}, false
	}
	p := r.participants[i]
	payload := mustJSON(map[string]any{"id": p.id, "type": p.kind})
	for _, q := range r.participants {
		if q.kind == "Agent" {
			s.pushLocked(q.id, "room_participants:"+r.id, "participant_removed", payload)
		}
	}
	r.participants = slices.Delete(r.participants, i, i+1)
	if p.kind == "Agent" {
		s.pushLocked(id, "agent_rooms:"+id, "room_removed", mustJSON(roomRemovedJSON(r, s.nowLocked())))
	}
	return p, true
}

func (s *Server) deleteRoomLocked(r *roomState) {
	removedAt := s.nowLocked()
	deleted := mustJSON(map[string]any{"id": r.id})
	removed := mustJSON(roomRemovedJSON(r, removedAt))
	for _, q := range r.participants {
		if q.kind != "Agent" {
			continue
		}
		s.pushLocked(q.id, "room_participants:"+r.id, "room_deleted", deleted)
		s.pushLocked(q.id, "agent_rooms:"+q.id, "room_removed", removed)
	}
	delete(s.rooms, r.id)
	s.roomOrder = slices.DeleteFunc(s.roomOrder, func(x *roomState) bool { return x == r })
}

// addMessageLocked stores m (filling id, time and sender fields) and
// pushes message_created to every mentioned agent that may receive it.
func (s *Server) addMessageLocked(r *roomState, m Message) *messageState {
	m.ID = newID()
	m.RoomID = r.id
	m.InsertedAt = s.nowLocked()
	m.SenderName, _, m.SenderType, _ = s.entityLocked(m.SenderID)
	s.seq++
	ms := &messageState{Message: m, seq: s.seq}
	r.messages = append(r.messages, ms)
	s.messages[m.ID] = ms
	if m.MessageType != "text" {
		return ms
	}
	var payload []byte
	for _, mn := range m.Mentions {
		if !ms.addressedTo(mn.ID) || !r.has(mn.ID) {
			continue
		}
		if _, isAgent := s.agents[mn.ID]; !isAgent {
			continue
		}
		if payload == nil {
			payload = mustJSON(messagePushJSON(ms))
		}
		s.pushLocked(mn.ID, "chat_room:"+r.id, "message_created", payload)
	}
	return ms
}

// addressedTo reports whether the message is work for the agent: a text
// message that mentions it (kind mention) and that it did not send.
// Only such messages appear in /messages and /messages/next.
func (m *messageState) addressedTo(agentID string) bool {
	if m.MessageType != "text" || m.SenderID == agentID {
		return false
	}
	for _, mn := range m.Mentions {
		if mn.ID == agentID && mn.Kind != "reference" {
			return true
		}
	}
	return false
}

func (m *messageState) statusFor(agentID string) string {
	if d := m.deliveries[agentID]; d != nil {
		return d.status
	}
	return StatusPending
}

// matchesFilter applies the REST status filter ("" = not processed).
func (m *messageState) matchesFilter(agentID, filter string) bool {
	st := m.statusFor(agentID)
	switch filter {
	case "":
		return st != StatusProcessed
	case "pending":
		return st == StatusPending || st == StatusFailed
	case "all":
		return true
	default:
		return st == filter
	}
}

func (m *messageState) deliveryFor(agentID string) *delivery {
	if m.deliveries == nil {
		m.deliveries = map[string]*delivery{}
	}
	d := m.deliveries[agentID]
	if d == nil {
		d = &delivery{status: StatusPending}
		m.deliveries[agentID] = d
	}
	return d
}

// startAttemptLocked implements POST .../processing: a new attempt,
// abandoning an open one.
func (s *Server) startAttemptLocked(m *messageState, agentID string) Attempt {
	d := m.deliveryFor(agentID)
	now := s.nowLocked()
	if n := len(d.attempts); n > 0 && d.attempts[n-1].Status == AttemptProcessing {
		d.attempts[n-1].Status = AttemptAbandoned
		d.attempts[n-1].CompletedAt = now
	}
	a := Attempt{Number: len(d.attempts) + 1, Status: AttemptProcessing, StartedAt: now}
	d.attempts = append(d.attempts, a)
	d.status = StatusProcessing
	return a
}

// finishAttemptLocked implements /processed (errText == "") and
// /failed; ok is false when no attempt is open.
func (s *Server) finishAttemptLocked(m *messageState, agentID string, failed bool, errText string) (Attempt, bool) {
	d := m.deliveries[agentID]
	if d == nil || len(d.attempts) == 0 || d.attempts[len(d.attempts)-1].Status != AttemptProcessing {
		return Attempt{}, false
	}
	a := &d.attempts[len(d.attempts)-1]
	a.CompletedAt = s.nowLocked()
	if failed {
		a.Status, a.Error, d.status = AttemptFailed, errText, StatusFailed
	} else {
		a.Status, d.status = AttemptSuccess, StatusProcessed
	}
	return *a, true
}

func (s *Server) contactsOfLocked(agentID string) []*contactState {
	if a := s.agents[agentID]; a != nil {
		return a.contacts
	}
	return nil
}

func (s *Server) isContactLocked(agentID, peerID string) bool {
	return slices.ContainsFunc(s.contactsOfLocked(agentID), func(c *contactState) bool { return c.peerID == peerID })
}

// linkContactsLocked makes a and b contacts of each other (where they
// are agents) and pushes contact_added.
func (s *Server) linkContactsLocked(a, b string) {
	now := s.nowLocked()
	for _, pair := range [][2]string{{a, b}, {b, a}} {
		owner := s.agents[pair[0]]
		if owner == nil || s.isContactLocked(pair[0], pair[1]) {
			continue
		}
		c := &contactState{id: newID(), peerID: pair[1], insertedAt: now}
		owner.contacts = append(owner.contacts, c)
		s.pushLocked(owner.ID, "agent_contacts:"+owner.ID, "contact_added", mustJSON(s.contactJSONLocked(c)))
	}
}

// unlinkContactsLocked removes both directions and pushes
// contact_removed to each agent side.
func (s *Server) unlinkContactsLocked(a, b string) {
	for _, pair := range [][2]string{{a, b}, {b, a}} {
		owner := s.agents[pair[0]]
		if owner == nil {
			continue
		}
		i := slices.IndexFunc(owner.contacts, func(c *contactState) bool { return c.peerID == pair[1] })
		if i < 0 {
			continue
		}
		id := owner.contacts[i].id
		owner.contacts = slices.Delete(owner.contacts, i, i+1)
		s.pushLocked(owner.ID, "agent_contacts:"+owner.ID, "contact_removed", mustJSON(map[string]any{"id": id}))
	}
}

// setRequestStatusLocked resolves a pending contact request and pushes
// contact_request_updated to the agents involved; approval links the
// two sides as contacts.
func (s *Server) setRequestStatusLocked(cr *contactRequestState, status string) {
	cr.Status = status
	payload := mustJSON(map[string]any{"id": cr.ID, "status": status})
	for _, id := range []string{cr.FromID, cr.ToID} {
		if _, ok := s.agents[id]; ok {
			s.pushLocked(id, "agent_contacts:"+id, "contact_request_updated", payload)
		}
	}
	if status == "approved" {
		s.linkContactsLocked(cr.FromID, cr.ToID)
	}
}

func (s *Server) newContactRequestLocked(from, to, message string) *contactRequestState {
	cr := &contactRequestState{ContactRequest{ID: newID(), FromID: from, ToID: to, Message: message,
		Status: "pending", InsertedAt: s.nowLocked()}}
	s.contactRequests = append(s.contactRequests, cr)
	if _, ok := s.agents[to]; ok {
		s.pushLocked(to, "agent_contacts:"+to, "contact_request_received", mustJSON(s.receivedRequestJSONLocked(cr)))
	}
	return cr
}
