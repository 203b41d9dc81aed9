package chatapi_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/bridgeworks/bridge/connector/chatapi"
	"github.com/bridgeworks/bridge/emulator/chatapiemu"
	"github.com/bridgeworks/bridge/internal/testutil"
	"github.com/bridgeworks/bridge/subjects"
)

// checkStream checks the events of one streamed chat: text_delta events
// with indexes 0..n-1 in order whose texts make want, then one
// message_completed with the whole text, and nothing after it.
func checkStream(t *testing.T, id string, evs []stored, want string) {
	t.Helper()
	var text strings.Builder
	completed := 0
	for i, s := range evs {
		if s.ev.Seq == nil || *s.ev.Seq != int64(i) {
			t.Errorf("command %s: event %d (%s) has seq %v, want %d", id, i, s.name, s.ev.Seq, i)
		}
		switch s.name {
		case chatapi.EventTextDelta:
			var d struct {
				Index int    `json:"index"`
				Text  string `json:"text"`
			}
			_ = json.Unmarshal(s.ev.Data, &d)
			if completed > 0 || d.Index != i {
				t.Errorf("command %s: text_delta %d has index %d (after %d completed events)", id, i, d.Index, completed)
			}
			text.WriteString(d.Text)
		case chatapi.EventCompleted:
			completed++
			var d struct {
				Text      string `json:"text"`
				Fragments int    `json:"fragments"`
			}
			_ = json.Unmarshal(s.ev.Data, &d)
			if d.Text != want || d.Fragments != i {
				t.Errorf("command %s: message_completed says %q in %d fragments, want %q in %d", id, d.Text, d.Fragments, want, i)
			}
		default:
			t.Errorf("command %s: unexpected event %s", id, s.name)
		}
	}
	if completed != 1 || text.String() != want {
		t.Errorf("command %s: %d completed events and deltas making %q; want 1 and %q", id, completed, text.String(), want)
	}
}

// TestBridgeConcurrentStreamedChats sends 100 streamed chats at once, one
// per agent, through the real bridge: every fragment of each reply is
// stored in order, then exactly one message_completed, then the result.
func TestBridgeConcurrentStreamedChats(t *testing.T) {
	t.Parallel()
	const chats, words = 100, 20
	emu, agents := startEmu(t, chats, chatapiemu.Options{})
	var sb strings.Builder
	for i := range words {
		fmt.Fprintf(&sb, " w%02d", i)
	}
	reply := strings.TrimSpace(sb.String())
	emu.SetScript("", chatapiemu.Script{Text: reply, FragmentDelay: time.Millisecond})
	b := startBridge(t, emu, t.TempDir(), "")
	nc, js := worker(t, b.url)
	res := results(t, nc)
	col := collect(t, b.url)

	for i, a := range agents {
		publishCommand(t, js, a.ID, "chat", fmt.Sprintf("chat-%03d", i), map[string]string{"message": fmt.Sprintf("question %d", i)})
	}
	testutil.Eventually(t, 90*time.Second, func() bool { return len(res()) == chats }, "%d results", chats)
	got := res()
	evs := col.settled(t)
	for i, a := range agents {
		id := fmt.Sprintf("chat-%03d", i)
		if r := got[id]; !r.OK {
			t.Errorf("command %s: result %+v", id, r.Error)
			continue
		}
		checkStream(t, id, evs[id], reply)
		if n := emu.ChatPosts(a.ID); n != 1 {
			t.Errorf("agent %d got %d chat posts, want 1", i, n)
		}
		for _, s := range evs[id] {
			if s.ev.Room != a.ID {
				t.Errorf("command %s: event in room %q, want the agent %s", id, s.ev.Room, a.ID)
				break
			}
		}
	}
}

// TestBridgeBrokenStreams: a stream cut mid-way and a stalled one each end
// with their fragments, one message_failed and an unknown_outcome result;
// the platform gets the chat once (no automatic second turn), and the
// room's next chat works.
func TestBridgeBrokenStreams(t *testing.T) {
	t.Parallel()
	emu, agents := startEmu(t, 2, chatapiemu.Options{})
	emu.SetScript("", chatapiemu.Script{Text: "one two three four five six"})
	cut, stall := agents[0], agents[1]
	emu.InjectStreamFault(cut.ID, chatapiemu.StreamFault{Kind: chatapiemu.StreamCut, After: 3})
	emu.InjectStreamFault(stall.ID, chatapiemu.StreamFault{Kind: chatapiemu.StreamStall, After: 2})
	b := startBridge(t, emu, t.TempDir(), `stream_idle_timeout = "300ms"`)
	nc, js := worker(t, b.url)
	res := results(t, nc)
	col := collect(t, b.url)

	publishCommand(t, js, cut.ID, "chat", "cut-1", map[string]string{"message": "first"})
	publishCommand(t, js, cut.ID, "chat", "cut-2", map[string]string{"message": "second"})
	publishCommand(t, js, stall.ID, "chat", "stall-1", map[string]string{"message": "first"})
	publishCommand(t, js, stall.ID, "chat", "stall-2", map[string]string{"message": "second"})
	testutil.Eventually(t, 60*time.Second, func() bool { return len(res()) == 4 }, "4 results")
	got, evs := res(), col.settled(t)

	for _, c := range []struct {
		id, reason string
		agent      chatapiemu.Agent
		frags      int
	}{{"cut-1", "stream_cut", cut, 3}, {"stall-1", "stream_stalled", stall, 2}} {
		r := got[c.id]
		if r.OK || r.Error == nil || r.Error.Code != subjects.ErrCodeUnknownOutcome {
			t.Errorf("%s: result %+v, want ok:false with code %s", c.id, r.Error, subjects.ErrCodeUnknownOutcome)
		}
		e := evs[c.id]
		if len(e) != c.frags+1 {
			t.Fatalf("%s: %d events, want %d deltas and message_failed", c.id, len(e), c.frags)
		}
		for _, s := range e[:c.frags] {
			if s.name != chatapi.EventTextDelta {
				t.Errorf("%s: event %s before message_failed", c.id, s.name)
			}
		}
		var f struct {
			Reason    string `json:"reason"`
			Text      string `json:"text"`
			Fragments int    `json:"fragments"`
			Retryable bool   `json:"retryable"`
		}
		last := e[len(e)-1]
		_ = json.Unmarshal(last.ev.Data, &f)
		if last.name != chatapi.EventFailed || f.Reason != c.reason || f.Fragments != c.frags || !f.Retryable {
			t.Errorf("%s: last event %s %+v, want message_failed %s after %d fragments, retryable", c.id, last.name, f, c.reason, c.frags)
		}
		// The room's next chat ran after this one ended for good: it was
		// never sent again.
		if n := emu.ChatPosts(c.agent.ID); n != 2 {
			t.Errorf("%s: the platform got %d chat posts for 2 commands", c.id, n)
		}
		users := 0
		for _, turn := range emu.History(c.agent.ID) {
			if turn.Role == "user" && turn.Content == "first" {
				users++
			}
		}
		if users != 1 {
			t.Errorf("%s: %d user turns of the broken chat on the platform, want 1", c.id, users)
		}
	}
	for _, id := range []string{"cut-2", "stall-2"} {
		if !got[id].OK {
			t.Errorf("%s after a broken stream: %+v", id, got[id].Error)
		}
		checkStream(t, id, evs[id], "one two three four five six")
	}
}

// TestBridgeTeamChatAndReads: team_chat publishes one team_response per
// member and a team_summary; history, agents and conversations answer on
// rpc.
func TestBridgeTeamChatAndReads(t *testing.T) {
	t.Parallel()
	emu, agents := startEmu(t, 3, chatapiemu.Options{})
	for i, a := range agents {
		emu.SetScript(a.ID, chatapiemu.Script{Text: fmt.Sprintf("opinion %d", i)})
	}
	team, err := emu.AddTeam("council", "parallel", agents[0].ID, agents[1].ID, agents[2].ID)
	if err != nil {
		t.Fatal(err)
	}
	b := startBridge(t, emu, t.TempDir(), "")
	nc, js := worker(t, b.url)
	res := results(t, nc)
	col := collect(t, b.url)

	publishCommand(t, js, team.ID, "team_chat", "team-1", map[string]string{"message": "what now?", "mode": "debate"})
	testutil.Eventually(t, 30*time.Second, func() bool { return len(res()) == 1 }, "the team chat's result")
	if r := res()["team-1"]; !r.OK {
		t.Fatalf("team_chat: %+v", r.Error)
	}
	evs := col.settled(t)["team-1"]
	if len(evs) != 4 {
		t.Fatalf("team_chat: %d events, want 3 team_response and a team_summary", len(evs))
	}
	for i, s := range evs[:3] {
		var d struct {
			AgentID string `json:"agent_id"`
			Content string `json:"content"`
			Mode    string `json:"mode"`
		}
		_ = json.Unmarshal(s.ev.Data, &d)
		if s.name != chatapi.EventTeamResponse || d.AgentID != agents[i].ID || d.Content != fmt.Sprintf("opinion %d", i) || d.Mode != "debate" {
			t.Errorf("event %d: %s %+v", i, s.name, d)
		}
		if s.ev.Room != team.ID {
			t.Errorf("event %d in room %q, want the team %s", i, s.ev.Room, team.ID)
		}
	}
	if evs[3].name != chatapi.EventTeamSummary {
		t.Errorf("last event %s, want team_summary", evs[3].name)
	}

	// A chat to read back, then the reads.
	publishCommand(t, js, agents[0].ID, "chat", "chat-1", map[string]any{"message": "hello", "stream": false})
	testutil.Eventually(t, 30*time.Second, func() bool { return res()["chat-1"].OK }, "the blocking chat's result")
	rpc := func(name string, args map[string]any) subjects.Result {
		t.Helper()
		b, _ := json.Marshal(args)
		m, err := nc.Request(subjects.DefaultPrefix+".rpc."+chatapi.Platform+"."+e2eConn+"."+name, b, 10*time.Second)
		if err != nil {
			t.Fatalf("rpc %s: %v", name, err)
		}
		var r subjects.Result
		if err := json.Unmarshal(m.Data, &r); err != nil {
			t.Fatalf("rpc %s: %v", name, err)
		}
		if !r.OK {
			t.Fatalf("rpc %s: %+v", name, r.Error)
		}
		return r
	}
	var h struct {
		Messages []struct{ Role, Content string } `json:"messages"`
	}
	_ = json.Unmarshal(rpc("history", map[string]any{"room": agents[0].ID, "limit": 10}).Data, &h)
	if len(h.Messages) != 2 || h.Messages[0].Content != "hello" || h.Messages[1].Content != "opinion 0" {
		t.Errorf("history: %+v", h.Messages)
	}
	var ag struct {
		Agents []struct{ ID string } `json:"agents"`
	}
	_ = json.Unmarshal(rpc("agents", nil).Data, &ag)
	if len(ag.Agents) != 4 {
		t.Errorf("agents: %d, want 4", len(ag.Agents))
	}
	var cv struct {
		Conversations []any `json:"conversations"`
	}
	if err := json.Unmarshal(rpc("conversations", map[string]any{"room": agents[0].ID}).Data, &cv); err != nil || cv.Conversations == nil {
		t.Errorf("conversations: %v", err)
	}
}
