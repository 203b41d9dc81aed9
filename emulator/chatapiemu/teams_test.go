package chatapiemu

import (
	"net/http"
	"testing"
)

func TestTeamChatModes(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{})
	r1, r2 := s.AddAgent("Researcher"), s.AddAgent("Analyst")
	s.SetScript(r1.ID, Script{Text: "idea one"})
	team, err := s.AddTeam("Startup", "debate", r1.ID, r2.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddTeam("Bad", "round-robin"); err == nil {
		t.Fatal("AddTeam accepted an unknown mode")
	}
	if _, err := s.AddTeam("Bad", "", "nope"); err == nil {
		t.Fatal("AddTeam accepted an unknown agent")
	}
	for _, tc := range []struct {
		mode, used string
		answers    int
		auto       bool
	}{
		{"", "debate", 2, false}, // the team's default mode
		{"brainstorm", "brainstorm", 2, false},
		{"round_robin", "round_robin", 2, false},
		{"parallel", "parallel", 2, false},
		{"expert", "expert", 1, false},
		{"auto", "parallel", 2, true},
	} {
		body := map[string]any{"message": "Brainstorm startup ideas"}
		if tc.mode != "" {
			body["mode"] = tc.mode
		}
		r := do(t, s, "POST", "/teams/"+team.ID+"/chat", team.APIKey, body)
		if r.status != http.StatusOK {
			t.Fatalf("mode %q: %d %s", tc.mode, r.status, r.body)
		}
		m := r.json(t)
		resp := m["responses"].([]any)
		if m["mode"] != tc.used || len(resp) != tc.answers || m["summary"] == "" || (m["auto_selected"] == true) != tc.auto {
			t.Fatalf("mode %q: %v", tc.mode, m)
		}
		first := resp[0].(map[string]any)
		if first["agent_id"] != r1.ID || first["agent_name"] != "Researcher" || first["content"] != "idea one" {
			t.Fatalf("mode %q: first response %v", tc.mode, first)
		}
		if tc.answers == 2 && resp[1].(map[string]any)["content"] != "Echo: Brainstorm startup ideas" {
			t.Fatalf("mode %q: second response %v", tc.mode, resp[1])
		}
	}
	r := do(t, s, "POST", "/teams/"+team.ID+"/chat", s.APIKey(), map[string]any{"message": "x", "mode": "round-robin"})
	if r.status != http.StatusUnprocessableEntity || r.json(t)["detail"].([]any)[0].(map[string]any)["type"] != "literal_error" {
		t.Fatalf("unknown mode: %d %s", r.status, r.body)
	}
	chats := s.TeamChats(team.ID)
	if len(chats) != 6 || chats[0].Mode != "debate" || chats[0].Requested != "" || chats[5].Requested != "auto" {
		t.Fatalf("team chats %+v", chats)
	}
	if s.TeamChatPosts(team.ID) != 7 {
		t.Fatalf("team posts %d", s.TeamChatPosts(team.ID))
	}
	if len(s.History(r1.ID)) != 0 {
		t.Fatal("team chat wrote agent history")
	}
	empty, _ := s.AddTeam("Empty", "")
	if r := do(t, s, "POST", "/teams/"+empty.ID+"/chat", s.APIKey(), map[string]any{"message": "x"}); r.status != http.StatusBadRequest {
		t.Fatalf("empty team: %d", r.status)
	}
	g := do(t, s, "GET", "/teams/"+team.ID, team.APIKey, nil).json(t)
	if g["chat_mode"] != "debate" || len(g["agents"].([]any)) != 2 {
		t.Fatalf("GET team %v", g)
	}
}

// GET /agents lists every agent for the global key; a scoped key gets 403.
func TestListAgents(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{})
	s.AddAgent("second")
	r := do(t, s, http.MethodGet, "/agents", s.APIKey(), nil)
	agents, _ := r.json(t)["agents"].([]any)
	if r.status != http.StatusOK || len(agents) != 2 {
		t.Fatalf("GET /agents: %d %s", r.status, r.body)
	}
	a, _ := s.Agent(s.AgentID())
	if r := do(t, s, http.MethodGet, "/agents", a.APIKey, nil); r.status != http.StatusForbidden {
		t.Errorf("agent key: %d, want 403", r.status)
	}
}
