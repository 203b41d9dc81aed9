package polyai_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bridgeworks/bridge/emulator/polyaiemu"
	"github.com/bridgeworks/bridge/internal/testutil"
)

// TestBridgeManySessions: 50 sessions created by a worker, 20 messages
// each; every event of every session is stored once, in sequence order,
// and every message reached the platform once.
func TestBridgeManySessions(t *testing.T) {
	t.Parallel()
	emu, url := startEmu(t, polyaiemu.Options{})
	natsURL, _ := runBridge(t, emu, url, t.TempDir())
	w := newWorker(t, natsURL)
	const sessions, messages = 50, 20
	ids := make([]string, sessions)
	for i := range ids {
		ids[i] = w.createSession(fmt.Sprintf("create-%d", i), nil)
	}
	for j := range messages {
		for i, sid := range ids {
			w.send(sid, "send_message", fmt.Sprintf("m-%d-%d", i, j), map[string]string{"text": fmt.Sprintf("message %d", j)})
		}
	}
	for i := range ids {
		for j := range messages {
			if r := w.result(fmt.Sprintf("m-%d-%d", i, j)); !r.OK {
				t.Fatalf("send_message %d/%d: %+v", i, j, r)
			}
		}
	}
	for _, sid := range ids {
		msgs := emu.UserMessages(sid)
		if len(msgs) != messages {
			t.Fatalf("session %s received %d messages, want %d", sid, len(msgs), messages)
		}
		for j, m := range msgs {
			if m.Text != fmt.Sprintf("message %d", j) || m.Duplicate {
				t.Fatalf("session %s message %d: %+v", sid, j, m)
			}
		}
	}
	// Every reply is in the history once the last echo came; wait until
	// the stream holds them all.
	var all []stored
	testutil.Eventually(t, 60*time.Second, func() bool {
		all = w.events()
		for _, sid := range ids {
			h := emu.History(sid)
			n := 0
			for _, s := range roomEvents(all, sid) {
				if s.wire.Sequence != nil {
					n++
				}
			}
			if n < len(h) {
				return false
			}
		}
		return true
	}, "every session's history stored")
	for _, sid := range ids {
		checkOnceInOrder(t, all, emu, sid)
		thinking := 0
		for _, s := range roomEvents(all, sid) {
			if s.wire.Type == "EVENT_TYPE_POLY_AGENT_THINKING" {
				thinking++
				if !s.env.Transient {
					t.Errorf("thinking event %s not marked transient", s.env.ID)
				}
			} else if s.env.Transient {
				t.Errorf("%s event %s marked transient", s.wire.Type, s.env.ID)
			}
		}
		if thinking != messages+1 {
			t.Errorf("session %s: %d thinking events, want %d", sid, thinking, messages+1)
		}
	}
}

// TestBridgeMidStreamDrop: the socket is cut in the middle of a streamed
// reply; the connector resumes from its cursor, every chunk is stored
// once, and one assembled poly_agent_message carries the whole text. A
// user message the platform drops is sent again and echoed once.
func TestBridgeMidStreamDrop(t *testing.T) {
	t.Parallel()
	emu, url := startEmu(t, polyaiemu.Options{ChunkSize: 4})
	natsURL, _ := runBridge(t, emu, url, t.TempDir())
	w := newWorker(t, natsURL)
	sid := w.createSession("create", map[string]any{"streaming": true})
	testutil.Eventually(t, 30*time.Second, func() bool { s, _ := emu.Session(sid); return s.Agent == polyaiemu.AgentPolyAI }, "agent joined")

	emu.DropSocketsAfter(sid, 4) // echo, then 3 chunks of the reply
	text := "tell me a long story please"
	w.send(sid, "send_message", "story", map[string]string{"text": text})
	if r := w.result("story"); !r.OK {
		t.Fatalf("send_message: %+v", r)
	}
	want := "You said: " + text
	var all []stored
	testutil.Eventually(t, 30*time.Second, func() bool {
		all = w.events()
		for _, s := range roomEvents(all, sid) {
			if s.wire.Assembled && strings.Contains(string(s.wire.Payload), want) {
				return true
			}
		}
		return false
	}, "assembled reply stored")
	if s, _ := emu.Session(sid); s.Connects < 2 {
		t.Fatalf("the socket was not cut and reopened (connects %d)", s.Connects)
	}
	resumed := false
	for _, h := range emu.Handshakes() {
		resumed = resumed || (h.SessionID == sid && h.Cursor != "" && h.Status == 101)
	}
	if !resumed {
		t.Error("no reconnect with a cursor")
	}
	checkOnceInOrder(t, all, emu, sid)
	assembled := 0
	for _, s := range roomEvents(all, sid) {
		if !s.wire.Assembled {
			continue
		}
		assembled++
		var p struct {
			Text     string `json:"text"`
			Complete bool   `json:"complete"`
		}
		_ = json.Unmarshal(s.wire.Payload, &p)
		if s.env.Type != "polyai.poly_agent_message" || !p.Complete {
			t.Errorf("assembled event %s: type %s, complete %v", s.env.ID, s.env.Type, p.Complete)
		}
		if p.Text != want && !strings.HasPrefix(p.Text, "Hi, I'm") {
			t.Errorf("assembled text %q", p.Text)
		}
	}
	if assembled != 2 { // the greeting and the reply
		t.Errorf("%d assembled messages, want 2", assembled)
	}

	// A message the platform silently drops is sent again, echoed once.
	emu.DropUserMessages(sid, 1)
	w.send(sid, "send_message", "dropped", map[string]string{"text": "are you there?"})
	r := w.result("dropped")
	var d struct {
		Sends int `json:"sends"`
	}
	_ = json.Unmarshal(r.Data, &d)
	if !r.OK || d.Sends != 2 {
		t.Fatalf("send_message after a drop: %+v", r)
	}
	n := 0
	for _, m := range emu.UserMessages(sid) {
		if m.Text == "are you there?" {
			n++
			if m.Duplicate || m.ClientEventID != "dropped" {
				t.Errorf("resent message recorded as %+v", m)
			}
		}
	}
	if n != 1 {
		t.Errorf("the platform took the dropped message %d times, want once", n)
	}
}

// TestBridgeTokenExpiry: a session whose token expired is replaced by a
// new one, announced as session_replaced; commands for the old session
// say so, the new one works.
func TestBridgeTokenExpiry(t *testing.T) {
	t.Parallel()
	emu, url := startEmu(t, polyaiemu.Options{})
	natsURL, _ := runBridge(t, emu, url, t.TempDir())
	w := newWorker(t, natsURL)
	old := w.createSession("create", nil)
	testutil.Eventually(t, 30*time.Second, func() bool { s, _ := emu.Session(old); return s.Agent == polyaiemu.AgentPolyAI }, "agent joined")
	info, _ := emu.Session(old)
	emu.ExpireToken(info.Token)
	emu.DropSockets(old)

	var repl stored
	testutil.Eventually(t, 30*time.Second, func() bool {
		for _, s := range w.events() {
			if s.env.Type == "polyai.session_replaced" {
				repl = s
				return true
			}
		}
		return false
	}, "session_replaced published")
	var d struct {
		Old    string `json:"old_session_id"`
		New    string `json:"new_session_id"`
		Reason string `json:"reason"`
	}
	if err := json.Unmarshal(repl.env.Data, &d); err != nil || d.Old != old || d.New == "" || d.New == old || repl.env.Room != old {
		t.Fatalf("session_replaced %s: room %q data %s", repl.subject, repl.env.Room, repl.env.Data)
	}
	if !strings.HasSuffix(repl.subject, ".sys.polyai."+e2eConn+".session_replaced") {
		t.Errorf("session_replaced on %s", repl.subject)
	}
	testutil.Eventually(t, 30*time.Second, func() bool { s, _ := emu.Session(d.New); return s.Agent == polyaiemu.AgentPolyAI }, "agent joined the new session")

	w.send(old, "send_message", "to-old", map[string]string{"text": "hello?"})
	if r := w.result("to-old"); r.OK || r.Error == nil || r.Error.Code != "session_replaced" || !strings.Contains(r.Error.Message, d.New) {
		t.Errorf("command for the replaced session: %+v", r)
	}
	w.send(d.New, "send_message", "to-new", map[string]string{"text": "hello again"})
	if r := w.result("to-new"); !r.OK {
		t.Errorf("command for the new session: %+v", r)
	}
}

// TestBridgeHandoffs: a server-managed handoff and a client-managed one
// produce their events; the session a live agent closed is forgotten.
func TestBridgeHandoffs(t *testing.T) {
	t.Parallel()
	emu, url := startEmu(t, polyaiemu.Options{})
	natsURL, _ := runBridge(t, emu, url, t.TempDir())
	w := newWorker(t, natsURL)
	server, client := w.createSession("c1", nil), w.createSession("c2", nil)
	for _, sid := range []string{server, client} {
		testutil.Eventually(t, 30*time.Second, func() bool { s, _ := emu.Session(sid); return s.Agent == polyaiemu.AgentPolyAI }, "agent joined")
	}
	if !emu.Handoff(server, polyaiemu.ServerHandoff{QueueUpdates: 2, Agent: polyaiemu.LiveAgent{ID: "h1", Name: "Hana"}}) ||
		!emu.LiveAgentTyping(server, true) || !emu.LiveAgentSay(server, "Hana here") || !emu.LiveAgentLeave(server) {
		t.Fatal("server-managed handoff did not run")
	}
	if !emu.ClientHandoff(client, "POLICY", "billing") {
		t.Fatal("client-managed handoff did not run")
	}
	names := func(all []stored, room string) []string {
		var out []string
		for _, s := range roomEvents(all, room) {
			out = append(out, strings.TrimPrefix(s.env.Type, "polyai."))
		}
		return out
	}
	after := func(list []string, first string) string {
		for i, n := range list {
			if n == first {
				return strings.Join(list[i:], " ")
			}
		}
		return ""
	}
	wantServer := "poly_agent_triggered_handoff poly_agent_left handoff_accepted handoff_queue_status handoff_queue_status live_agent_joined live_agent_typing live_agent_message live_agent_left session_end"
	wantClient := "poly_agent_triggered_handoff client_handoff_required poly_agent_left"
	var all []stored
	testutil.Eventually(t, 30*time.Second, func() bool {
		all = w.events()
		return after(names(all, server), "poly_agent_triggered_handoff") == wantServer &&
			after(names(all, client), "poly_agent_triggered_handoff") == wantClient
	}, "handoff events stored")
	for _, s := range roomEvents(all, client) {
		if s.env.Type == "polyai.client_handoff_required" {
			if !strings.HasSuffix(s.subject, "."+client+".client_handoff_required") || !strings.Contains(string(s.wire.Payload), `"POLICY"`) {
				t.Errorf("client_handoff_required on %s: %s", s.subject, s.wire.Payload)
			}
		}
	}
	checkOnceInOrder(t, all, emu, server)
	checkOnceInOrder(t, all, emu, client)
	// The ended session is no longer held.
	testutil.Eventually(t, 10*time.Second, func() bool {
		m, err := w.nc.Request("bridge.rpc.polyai."+e2eConn+".sessions", []byte(`{}`), 5*time.Second)
		return err == nil && !strings.Contains(string(m.Data), server) && strings.Contains(string(m.Data), client)
	}, "the ended session forgotten, the other held")
}

// TestBridgeRestartResumes: a bridge stops; the agent speaks meanwhile;
// a new bridge on the same store resumes every session from its cursor:
// nothing missed, nothing stored twice.
func TestBridgeRestartResumes(t *testing.T) {
	t.Parallel()
	emu, url := startEmu(t, polyaiemu.Options{})
	dir := t.TempDir()
	natsURL, stop := runBridge(t, emu, url, dir)
	w := newWorker(t, natsURL)
	var ids []string
	for i := range 5 {
		sid := w.createSession(fmt.Sprintf("c%d", i), nil)
		w.send(sid, "send_message", fmt.Sprintf("before-%d", i), map[string]string{"text": "before"})
		ids = append(ids, sid)
	}
	for i := range ids {
		if r := w.result(fmt.Sprintf("before-%d", i)); !r.OK {
			t.Fatalf("send_message: %+v", r)
		}
	}
	// A cursor exists once an event of the session's history is stored
	// (the cursor moves only over stored events): wait for one each, or a
	// session whose echo was still on its way at the stop rightly resumes
	// from the start, and the check below could not tell.
	testutil.Eventually(t, 20*time.Second, func() bool {
		all := w.events()
		for _, sid := range ids {
			if !slices.ContainsFunc(roomEvents(all, sid), func(s stored) bool { return s.wire.Sequence != nil }) {
				return false
			}
		}
		return true
	}, "an event of each session's history stored")
	stop()
	testutil.Eventually(t, 10*time.Second, func() bool { return emu.Connections() == 0 }, "sockets closed")
	for _, sid := range ids {
		emu.Say(sid, polyaiemu.AgentMessage{Text: "while the bridge was away"})
	}

	natsURL, _ = runBridge(t, emu, url, dir)
	w = newWorker(t, natsURL)
	var all []stored
	testutil.Eventually(t, 30*time.Second, func() bool {
		all = w.events()
		for _, sid := range ids {
			if len(roomEvents(all, sid)) == 0 || !strings.Contains(string(roomEvents(all, sid)[len(roomEvents(all, sid))-1].wire.Payload), "while the bridge was away") {
				return false
			}
		}
		return true
	}, "the events of the downtime stored")
	for _, sid := range ids {
		checkOnceInOrder(t, all, emu, sid)
		resumed := false
		for _, h := range emu.Handshakes() {
			resumed = resumed || (h.SessionID == sid && h.Cursor != "" && h.Cursor != "0")
		}
		if !resumed {
			t.Errorf("session %s was not resumed with a cursor", sid)
		}
	}
	for i, sid := range ids {
		w.send(sid, "send_message", fmt.Sprintf("after-%d", i), map[string]string{"text": "after"})
		if r := w.result(fmt.Sprintf("after-%d", i)); !r.OK {
			t.Errorf("send_message after the restart: %+v", r)
		}
	}
}
