package polyaiemu

import (
	"slices"
	"strings"
	"testing"

	"github.com/coder/websocket"
)

func TestStreaming(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{ChunkSize: 4, NoAutoReply: true, Greeting: "Hello there"})
	c, sid, _ := joined(t, s, `{"streaming_enabled": true}`)
	greet := chunksOf(c.flat())
	if len(greet) != 3 || assemble(greet) != "Hello there" {
		t.Fatalf("greeting chunks %v", greet)
	}
	for i, ch := range greet {
		if ch.Payload["chunk_index"] != float64(i+1) || ch.Payload["message_id"] != greet[0].Payload["message_id"] ||
			ch.Payload["is_complete"] != (i == 2) || ch.Sequence == nil {
			t.Fatalf("chunk %d: %v", i, ch.Payload)
		}
	}

	// NoAutoReply: the message is echoed, nothing answers it.
	c.sendEvent(TypeUserMessage, map[string]any{"text": "hi"}, "m1")
	c.waitType(TypeUserMessage, 1)
	s.Say(sid, AgentMessage{Text: "Pick one", Suggestions: []string{"Yes", "No"},
		Attachments: []Attachment{{Title: "Card", ContentType: "ATTACHMENT_CONTENT_TYPE_URL", ContentURL: "https://example.com"}}})
	all := c.waitN("say", 2, func(e wireEvent) bool { return e.Type == TypeAgentMessageChunk && e.Payload["is_complete"] == true })
	if i := slices.IndexFunc(all, ofType(TypeUserMessage)); all[i+1].Type != TypeAgentThinking {
		t.Fatalf("no THINKING before the chunks: %s", types(all))
	}
	say := chunksOf(all)[3:]
	last := say[len(say)-1].Payload
	if len(say) != 3 || assemble(say) != "Pick one" || last["text"] != "" ||
		len(last["response_suggestions"].([]any)) != 2 || len(last["attachments"].([]any)) != 1 ||
		len(say[0].Payload["response_suggestions"].([]any)) != 0 {
		t.Fatalf("chunks with extras: %v", say)
	}
	if slices.ContainsFunc(all, ofType(TypeAgentMessage)) {
		t.Fatal("a whole message in a streaming session")
	}
}

func chunksOf(events []wireEvent) []wireEvent {
	var out []wireEvent
	for _, e := range events {
		if e.Type == TypeAgentMessageChunk {
			out = append(out, e)
		}
	}
	return out
}

func assemble(chunks []wireEvent) string {
	var b strings.Builder
	for _, c := range chunks {
		b.WriteString(c.Payload["text"].(string))
	}
	return b.String()
}

func TestServerHandoff(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{})
	c, sid, tok := joined(t, s, "")
	if s.LiveAgentSay(sid, "too early") || s.LiveAgentJoin(sid, LiveAgent{ID: "a1"}) {
		t.Fatal("live agent acted before a handoff")
	}
	if !s.Handoff(sid, ServerHandoff{Queue: "billing", QueueUpdates: 2}) {
		t.Fatal("handoff refused")
	}
	if s.Handoff(sid, ServerHandoff{}) {
		t.Fatal("second handoff accepted")
	}
	s.LiveAgentJoin(sid, LiveAgent{ID: "a1", Name: "Sam", AvatarURL: "https://example.com/sam.png"})
	c.sendEvent(TypeUserMessage, map[string]any{"text": "are you human?"}, "m1")
	c.waitType(TypeUserMessage, 1)
	s.LiveAgentTyping(sid, true)
	s.LiveAgentSay(sid, "Yes, I'm Sam.")
	s.LiveAgentLeave(sid)
	all := c.waitN("session end", 1, ofType(TypeSessionEnd))
	got := typesOf(all[5:])
	want := []string{"POLY_AGENT_TRIGGERED_HANDOFF", "POLY_AGENT_LEFT", "HANDOFF_ACCEPTED", "HANDOFF_QUEUE_STATUS",
		"HANDOFF_QUEUE_STATUS", "LIVE_AGENT_JOINED", "USER_MESSAGE", "LIVE_AGENT_TYPING", "LIVE_AGENT_MESSAGE",
		"LIVE_AGENT_LEFT", "SESSION_END"}
	if !slices.Equal(got, want) {
		t.Fatalf("handoff flow %v", got)
	}
	ev := all[5:]
	agent, _ := ev[5].Payload["agent"].(map[string]any)
	if ev[2].Payload["queue_name"] != "billing" || ev[3].Payload["position_in_queue"] != 2.0 ||
		agent["id"] != "a1" || agent["name"] != "Sam" || ev[7].Sequence != nil ||
		ev[7].Payload["state"] != "TYPING_STATE_STARTED" || ev[8].Payload["agent_id"] != "a1" ||
		ev[8].Payload["text"] != "Yes, I'm Sam." || ev[10].Payload["reason"] != ReasonNaturalEnd {
		t.Fatalf("handoff payloads %v", ev)
	}
	if msgs := s.UserMessages(sid); len(msgs) != 1 || msgs[0].To != AgentLive {
		t.Fatalf("message to the live agent %+v", msgs)
	}
	if code := websocket.CloseStatus(c.waitClosed()); code != websocket.StatusNormalClosure {
		t.Fatalf("close after SESSION_END: %v", code)
	}
	refusal(t, socketURL(s, sid, tok, ""), 404, "session not found")
	if info, _ := s.Session(sid); !info.Ended || info.EndReason != ReasonNaturalEnd {
		t.Fatalf("session %+v", info)
	}
}

func TestClientHandoffAndFailures(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{})
	c, sid, _ := joined(t, s, "")
	s.ClientHandoff(sid, "POLICY", "sales")
	all := c.waitN("left", 1, ofType(TypeAgentLeft))
	if got := typesOf(all[5:]); !slices.Equal(got, []string{"POLY_AGENT_TRIGGERED_HANDOFF", "CLIENT_HANDOFF_REQUIRED", "POLY_AGENT_LEFT"}) {
		t.Fatalf("client handoff %v", got)
	}
	if p := all[6].Payload; p["reason"] != "POLICY" || p["queue_name"] != "sales" {
		t.Fatalf("CLIENT_HANDOFF_REQUIRED %v", p)
	}
	// Nobody answers now; a join brings the PolyAI agent back.
	c.sendEvent(TypeUserMessage, map[string]any{"text": "hello?"}, "m1")
	c.sendEvent(TypeRequestJoin, map[string]any{}, "")
	c.waitType(TypeAgentMessage, 2) // the new greeting
	all = c.flat()
	echo := slices.IndexFunc(all, ofType(TypeUserMessage))
	if got := typesOf(all[echo:]); !slices.Equal(got, []string{"USER_MESSAGE", "REQUEST_POLY_AGENT_JOIN",
		"POLY_AGENT_JOINED", "POLY_AGENT_THINKING", "POLY_AGENT_MESSAGE"}) {
		t.Fatalf("after the client handoff: %v", got)
	}
	if msgs := s.UserMessages(sid); len(msgs) != 1 || msgs[0].To != AgentLeft {
		t.Fatalf("recorded %+v", msgs)
	}

	// A handoff that fails, and one that times out.
	for i, fail := range []func(string) bool{s.HandoffFailed, s.HandoffTimeout} {
		if !s.Handoff(sid, ServerHandoff{}) || !fail(sid) {
			t.Fatal("handoff step refused")
		}
		typ := []string{TypeHandoffFailed, TypeHandoffTimeout}[i]
		c.waitType(typ, 1)
		if info, _ := s.Session(sid); info.Agent != AgentLeft {
			t.Fatalf("after %s: %s", typ, info.Agent)
		}
		c.sendEvent(TypeRequestJoin, map[string]any{}, "")
		c.waitType(TypeAgentJoined, 3+i)
	}
}

func TestEndSession(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{})
	c, sid, _ := joined(t, s, "")
	c.sendEvent(TypeUserEndSession, map[string]any{}, "bye")
	all := c.waitN("end", 1, ofType(TypeSessionEnd))
	if n := len(all); all[n-2].Type != TypeUserEndSession || all[n-2].custom("client_event_id") != "bye" ||
		all[n-1].Payload["reason"] != ReasonUserEnd {
		t.Fatalf("end flow %s", types(all))
	}
	if code := websocket.CloseStatus(c.waitClosed()); code != websocket.StatusNormalClosure {
		t.Fatalf("close %v", code)
	}

	// Ended by the test with any reason; nothing follows.
	d, sid2, _ := joined(t, s, "")
	if !s.EndSession(sid2, ReasonNaturalEnd) || s.EndSession(sid2, ReasonUserEnd) || s.Say(sid2, AgentMessage{Text: "x"}) {
		t.Fatal("EndSession on an ended session")
	}
	if e := d.waitType(TypeSessionEnd, 1); e.Payload["reason"] != ReasonNaturalEnd {
		t.Fatalf("reason %v", e.Payload)
	}
	d.waitClosed()
	if info, _ := s.Session(sid); info.EndReason != ReasonUserEnd || info.Sockets != 0 {
		t.Fatalf("session %+v", info)
	}
	if s.ChangeLanguage(sid2, "fr") {
		t.Fatal("event on an ended session")
	}
}
