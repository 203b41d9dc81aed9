package chatapiemu

import (
	"fmt"
	"slices"
)

// The Go API tests drive the platform with. Methods taking ids return a
// zero value (or false, or an error) when an id is unknown.

// AddAgent creates an agent with a random id and its own agent-scoped
// key (Agent.APIKey).
func (s *Server) AddAgent(name string) Agent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addAgentLocked(Agent{ID: newID(), Name: name, APIKey: newKey("at_agent_")}).Agent
}

// Agent returns an agent by id.
func (s *Server) Agent(id string) (Agent, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a := s.agents[id]; a != nil {
		return a.Agent, true
	}
	return Agent{}, false
}

// Agents returns every agent, oldest first.
func (s *Server) Agents() []Agent {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Agent, 0, len(s.agentOrder))
	for _, a := range s.agentOrder {
		out = append(out, a.Agent)
	}
	return out
}

// AddTeam creates a team of existing agents with a default chat mode
// ("" = "auto") and its own team-scoped key (Team.APIKey).
func (s *Server) AddTeam(name, chatMode string, agentIDs ...string) (Team, error) {
	if chatMode == "" {
		chatMode = "auto"
	}
	if !slices.Contains(s.opts.TeamModes, chatMode) {
		return Team{}, fmt.Errorf("chatapiemu: chat mode %q is not one of %v", chatMode, s.opts.TeamModes)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range agentIDs {
		if s.agents[id] == nil {
			return Team{}, fmt.Errorf("chatapiemu: no agent %q", id)
		}
	}
	t := &teamState{Team: Team{ID: newID(), Name: name, ChatMode: chatMode,
		AgentIDs: slices.Clone(agentIDs), APIKey: newKey("at_team_")}}
	s.teams[t.ID] = t
	s.teamOrder = append(s.teamOrder, t)
	s.keys[t.APIKey] = &keyState{kind: keyTeam, id: t.ID}
	return t.Team, nil
}

// Teams returns every team, oldest first.
func (s *Server) Teams() []Team {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Team, 0, len(s.teamOrder))
	for _, t := range s.teamOrder {
		tm := t.Team
		tm.AgentIDs = slices.Clone(tm.AgentIDs)
		out = append(out, tm)
	}
	return out
}

// SetScript sets how an agent answers ("" sets the answer of every
// agent without a script of its own). It reports whether the agent
// exists.
func (s *Server) SetScript(agentID string, sc Script) bool {
	sc.ToolCalls = slices.Clone(sc.ToolCalls)
	s.mu.Lock()
	defer s.mu.Unlock()
	if agentID == "" {
		s.defaultScript = sc
		return true
	}
	a := s.agents[agentID]
	if a == nil {
		return false
	}
	a.script = &sc
	return true
}

// History returns an agent's whole history, oldest first.
func (s *Server) History(agentID string) []Turn {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a := s.agents[agentID]; a != nil {
		return slices.Clone(a.history)
	}
	return nil
}

// ChatPosts returns how many POSTs reached an agent's /chat and
// /chat/stream, whatever their outcome (injected failures, 401, 422
// included).
func (s *Server) ChatPosts(agentID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a := s.agents[agentID]; a != nil {
		return a.chatPosts
	}
	return 0
}

// TeamChats returns the answered team chats of a team, oldest first.
func (s *Server) TeamChats(teamID string) []TeamChat {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t := s.teams[teamID]; t != nil {
		return slices.Clone(t.chats)
	}
	return nil
}

// TeamChatPosts returns how many POSTs reached a team's /chat, whatever
// their outcome.
func (s *Server) TeamChatPosts(teamID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t := s.teams[teamID]; t != nil {
		return t.posts
	}
	return 0
}

// AddInboxItem puts an item in an agent's inbox, unread. Empty fields
// get defaults: ID a new UUID (kept for the item's life), Type
// "message", CreatedAt now. It fails for an unknown agent, a duplicate
// id, or an inbox holding Options.MaxInbox items none of which is read
// (read items make room, oldest first).
func (s *Server) AddInboxItem(agentID string, it InboxItem) (InboxItem, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.agents[agentID]
	if a == nil {
		return InboxItem{}, fmt.Errorf("chatapiemu: no agent %q", agentID)
	}
	return s.addInboxItemLocked(a, it)
}

// InboxItems returns every item of an agent's inbox, read or not,
// oldest first.
func (s *Server) InboxItems(agentID string) []InboxItem {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.agents[agentID]
	if a == nil {
		return nil
	}
	out := make([]InboxItem, 0, len(a.inbox))
	for _, it := range a.inbox {
		out = append(out, *it)
	}
	return out
}

// MarkReadCalls returns every accepted mark-read call, oldest first.
func (s *Server) MarkReadCalls() []MarkReadCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := slices.Clone(s.markReads)
	for i := range out {
		out[i].IDs, out[i].Marked = slices.Clone(out[i].IDs), slices.Clone(out[i].Marked)
	}
	return out
}

// Conversations returns an agent's conversations, oldest first.
func (s *Server) Conversations(agentID string) []Conversation {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.agents[agentID]
	if a == nil {
		return nil
	}
	out := make([]Conversation, 0, len(a.conversations))
	for _, cv := range a.conversations {
		out = append(out, *cv)
	}
	return out
}

// Requests returns the requests answered so far, oldest first.
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

// ActiveStreams returns how many SSE streams are open.
func (s *Server) ActiveStreams() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.streams
}

// StalledStreams returns how many streams wait in a StreamStall.
func (s *Server) StalledStreams() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stalled
}
