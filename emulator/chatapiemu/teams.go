package chatapiemu

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
)

func (s *Server) getTeam(c *call) {
	s.mu.Lock()
	t := s.teams[c.id]
	var body map[string]any
	if t != nil {
		agents := make([]map[string]string, 0, len(t.AgentIDs))
		for _, id := range t.AgentIDs {
			if a := s.agents[id]; a != nil {
				agents = append(agents, map[string]string{"id": a.ID, "name": a.Name})
			}
		}
		body = map[string]any{"id": t.ID, "name": t.Name, "description": "", "chat_mode": t.ChatMode,
			"agents": agents}
	}
	s.mu.Unlock()
	if body == nil {
		writeDetail(c.w, http.StatusNotFound, "Team not found")
		return
	}
	writeJSON(c.w, http.StatusOK, body)
}

// teamChat answers POST /teams/:id/chat {message, mode?}: the mode
// decides who answers (expert: the first agent; every other mode: all
// agents in team order); "auto" resolves to Options.AutoMode.
func (s *Server) teamChat(c *call) {
	obj, ok := c.object(false)
	if !ok {
		return
	}
	var errs []fieldError
	msg, fe := requiredStr(obj, "message")
	if fe != nil {
		errs = append(errs, *fe)
	}
	mode, _, fe := str(obj, "mode", false)
	switch {
	case fe != nil:
		errs = append(errs, *fe)
	case mode != "" && !slices.Contains(s.opts.TeamModes, mode):
		quoted := make([]string, len(s.opts.TeamModes))
		for i, m := range s.opts.TeamModes {
			quoted[i] = "'" + m + "'"
		}
		errs = append(errs, fieldError{Type: "literal_error", Loc: []any{"body", "mode"},
			Msg: "Input should be " + strings.Join(quoted, ", "), Input: mode})
	}
	if len(errs) > 0 {
		c.invalid(errs...)
		return
	}

	s.mu.Lock()
	status, body := s.teamAnswerLocked(c.id, msg, mode)
	s.mu.Unlock()
	writeJSON(c.w, status, body)
}

func detail(msg string) map[string]string { return map[string]string{"detail": msg} }

// teamAnswerLocked records a team chat and returns the response.
func (s *Server) teamAnswerLocked(teamID, msg, mode string) (int, any) {
	t := s.teams[teamID]
	if t == nil {
		return http.StatusNotFound, detail("Team not found")
	}
	var members []*agentState
	for _, id := range t.AgentIDs {
		if a := s.agents[id]; a != nil {
			members = append(members, a)
		}
	}
	if len(members) == 0 {
		return http.StatusBadRequest, detail("Team has no agents")
	}
	used := mode
	if used == "" {
		used = t.ChatMode
	}
	auto := used == "auto"
	if auto {
		used = s.opts.AutoMode
	}
	if used == "expert" {
		members = members[:1]
	}
	rec := TeamChat{TeamID: t.ID, Message: msg, Mode: used, Requested: mode, At: time.Now().UTC()}
	responses := make([]map[string]string, 0, len(members))
	for _, a := range members {
		text := s.scriptLocked(a).answerText(msg)
		rec.Responses = append(rec.Responses, TeamResponse{AgentID: a.ID, AgentName: a.Name, Content: text})
		responses = append(responses, map[string]string{"agent_id": a.ID, "agent_name": a.Name, "content": text})
	}
	rec.Summary = fmt.Sprintf("The team answered in %s mode with %d response(s).", used, len(members))
	t.chats = append(t.chats, rec)
	if len(t.chats) > s.opts.MaxHistory {
		t.chats = slices.Delete(t.chats, 0, len(t.chats)-s.opts.MaxHistory)
	}
	body := map[string]any{"responses": responses, "summary": rec.Summary, "mode": used}
	if auto {
		body["auto_selected"] = true
	}
	return http.StatusOK, body
}
