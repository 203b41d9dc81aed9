package agentconnectemu

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

func TestHumanAgentReply(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{Reply: func(in string) string { return strings.ToUpper(in) }})
	tok := s.Token(DefaultUser)
	id := mustSession(t, s, tok)
	c := mustDial(t, s, id, tok)
	c.send(`{"type":"text","content":"hello ai","timestamp":"2024-02-23T12:00:00Z"}`)
	f, _ := c.waitFrame("reply", 0, ofType("text"))
	meta, _ := f["metadata"].(map[string]any)
	if f["content"] != "HELLO AI" || f["sender"] != "ai1_"+id || f["receiver"] != "human_"+id ||
		meta["provider"] != "groq" || meta["model"] != "llama-3.3-70b-versatile" || len(f) != 6 {
		t.Fatalf("reply %v", f)
	}
	if _, err := time.Parse(time.RFC3339Nano, f["timestamp"].(string)); err != nil {
		t.Fatalf("timestamp: %v", err)
	}
	if n := c.count(func(map[string]any) bool { return true }); n != 1 {
		t.Fatalf("%d frames: the user's message must not be echoed", n)
	}
	if r := s.Received(id); len(r) != 1 || r[0].Timestamp != "2024-02-23T12:00:00Z" {
		t.Fatalf("received %+v", r)
	}
	if b := s.Broadcasts(id); len(b) != 1 || b[0].Content != "HELLO AI" {
		t.Fatalf("broadcasts %+v", b)
	}
}

func TestSlowAINotice(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{ReplyDelay: time.Hour, ReplyTimeout: 20 * time.Millisecond})
	tok := s.Token(DefaultUser)
	id := mustSession(t, s, tok)
	c := mustDial(t, s, id, tok)
	c.text("anyone?")
	c.waitFrame("slow notice", 0, withContent("system", NoticeSlowAI))
	if c.count(ofType("text")) != 0 {
		t.Fatal("a reply came after the timeout")
	}
}

func TestCooldownPastTokenBudget(t *testing.T) {
	t.Parallel()
	// "0123456789abcdef" costs 4 tokens, its echo 6: 10 per message.
	s := newServer(t, Options{TokenBudget: 15, TokenWindow: time.Minute, ReplyTimeout: 20 * time.Millisecond})
	tok := s.Token(DefaultUser)
	id := mustSession(t, s, tok)
	c := mustDial(t, s, id, tok)
	for i := range 2 { // 10, then 20 > 15: the second reply still comes
		c.text("0123456789abcdef")
		eventually(t, "reply", func() bool { return c.count(ofType("text")) == i+1 })
	}
	c.text("and now?")
	f, i := c.waitFrame("cooldown", 0, ofType("cooldown"))
	rem, _ := f["metadata"].(map[string]any)["cooldown_remaining"].(float64)
	if rem <= 50 || rem > 60 || f["sender"] != "ai1_"+id || f["receiver"] != "human_"+id ||
		f["content"] != "I am in cooldown for 60 seconds. Please try again later." {
		t.Fatalf("cooldown frame %v", f)
	}
	// The cooldown is not the reply: the slow notice follows.
	c.waitFrame("slow notice", i, withContent("system", NoticeSlowAI))
	if c.count(ofType("text")) != 2 {
		t.Fatal("a reply came during the cooldown")
	}
}

func TestForceCooldownSecondsLeft(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{ReplyTimeout: 20 * time.Millisecond})
	tok := s.Token(DefaultUser)
	id := mustSession(t, s, tok)
	c := mustDial(t, s, id, tok)
	s.ForceCooldown(id, 42500*time.Millisecond)
	c.text("hi")
	f, _ := c.waitFrame("cooldown", 0, ofType("cooldown"))
	rem := f["metadata"].(map[string]any)["cooldown_remaining"].(float64)
	if rem > 42.5 || rem < 32 || !regexp.MustCompile(`^I am in cooldown for 4[23] seconds\. Please try again later\.$`).MatchString(f["content"].(string)) {
		t.Fatalf("cooldown %v", f)
	}
	s.ForceCooldown(id, 0) // over: the next message is answered
	c.text("back?")
	c.waitFrame("reply", 0, withContent("text", "Echo: back?"))
}

func TestStopAtMaxTurns(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{MaxTurns: 3, ReplyTimeout: 20 * time.Millisecond})
	tok := s.Token(DefaultUser)
	id := mustSession(t, s, tok)
	c := mustDial(t, s, id, tok)
	for i := range 2 {
		c.text("turn")
		eventually(t, "reply", func() bool { return c.count(ofType("text")) == i+1 })
	}
	c.text("third")
	f, i := c.waitFrame("stop", 0, ofType("stop"))
	if f["content"] != stopText || f["metadata"].(map[string]any)["reason"] != "max_turns_reached" ||
		f["sender"] != "ai1_"+id || f["receiver"] != "human_"+id {
		t.Fatalf("stop %v", f)
	}
	// The conversation is over: a later message only gets the slow notice.
	c.text("still there?")
	c.waitFrame("slow notice", i, withContent("system", NoticeSlowAI))
	if c.count(ofType("text")) != 2 || c.count(ofType("system")) != 1 {
		t.Fatalf("frames after stop %v", c.rawFrames())
	}
}

func TestForceStopAndExit(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{ReplyTimeout: 20 * time.Millisecond})
	tok := s.Token(DefaultUser)
	id := mustSession(t, s, tok)
	c := mustDial(t, s, id, tok)
	s.ForceStop(id)
	c.waitFrame("stop", 0, ofType("stop"))

	id2 := mustSession(t, s, tok)
	c2 := mustDial(t, s, id2, tok)
	c2.text("bye __EXIT__")
	c2.waitFrame("slow notice", 0, withContent("system", NoticeSlowAI))
	c2.text("hello again")
	eventually(t, "second slow notice", func() bool { return c2.count(withContent("system", NoticeSlowAI)) == 2 })
	if c2.count(ofType("text")) != 0 || c2.count(ofType("stop")) != 0 {
		t.Fatalf("frames after __EXIT__ %v", c2.rawFrames())
	}
}

func TestAgentAgentExchange(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{MaxTurns: 3})
	tok := s.Token(DefaultUser)
	r := createSession(t, s, tok, `{"session_type":"agent_agent","agents":{"a":{"provider":"groq"},"b":{"provider":"openai"}}}`)
	id := r.body["session_id"].(string)
	a1, a2 := "ai1_"+id, "ai2_"+id
	c := mustDial(t, s, id, tok)
	c.text("discuss")
	// ai1 injects to ai2; they alternate until ai2 takes its 3rd message.
	stop, _ := c.waitFrame("stop", 0, ofType("stop"))
	if stop["sender"] != a2 || stop["receiver"] != a1 {
		t.Fatalf("stop %v", stop)
	}
	var got []string
	for _, raw := range c.rawFrames() {
		var f map[string]any
		_ = json.Unmarshal([]byte(raw), &f)
		if f["type"] == "text" {
			m := f["metadata"].(map[string]any)
			if m["conversation_type"] != "agent_agent" || m["original_type"] != "response" {
				t.Fatalf("metadata %v", m)
			}
			got = append(got, f["sender"].(string)+">"+f["receiver"].(string))
		}
	}
	want := []string{a2 + ">" + a1, a1 + ">" + a2, a2 + ">" + a1, a1 + ">" + a2}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("exchange %v, want %v", got, want)
	}

	// Unknown agent ids are refused with an error frame.
	c.send(`{"type":"text","content":"x","sender":"ai9","receiver":"` + a1 + `"}`)
	f, _ := c.waitFrame("error", 0, ofType("error"))
	if !strings.HasPrefix(f["content"].(string), "Failed to process message: ") {
		t.Fatalf("error %v", f)
	}
}

func TestAgentAgentCooldownEndsSilently(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{})
	tok := s.Token(DefaultUser)
	r := createSession(t, s, tok, `{"session_type":"agent_agent","agents":{"a":{"provider":"groq"},"b":{"provider":"groq"}}}`)
	id := r.body["session_id"].(string)
	c := mustDial(t, s, id, tok)
	s.ForceCooldown(id, time.Minute)
	c.send(`{"type":"text","content":"x","sender":"ai2_` + id + `","receiver":"ai1_` + id + `"}`)
	eventually(t, "message stored", func() bool { got, _ := s.Session(id); return got.Messages == 1 })
	s.SendSystem(id, "marker") // everything before it has been broadcast
	c.waitFrame("marker", 0, withContent("system", "marker"))
	if n := c.count(func(f map[string]any) bool { return f["type"] != "system" }); n != 0 {
		t.Fatalf("frames during an AI-to-AI cooldown %v", c.rawFrames())
	}
}

func TestSessionLifetime(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{SessionLifetime: time.Second}) // room for the dial on a busy machine
	tok := s.Token(DefaultUser)
	id := mustSession(t, s, tok)
	c := mustDial(t, s, id, tok)
	c.waitFrame("cleanup notice", 0, withContent("system", NoticeInactiveClosed))
	if got, _ := s.Session(id); got.Live || got.EndReason != "expired" || got.Sockets != 1 {
		t.Fatalf("session %+v", got)
	}
	if r := do(t, "GET", s.URL()+SessionsPath+id, tok, "", ""); r.status != 404 {
		t.Fatalf("get: %d", r.status)
	}
	c.text("hello?")
	c.waitFrame("notice", 0, withContent("system", NoticeInactiveNew))
	if code := websocket.CloseStatus(c.waitClosed()); code != websocket.StatusNormalClosure {
		t.Fatalf("close %v", code)
	}
	if _, resp, err := dial(t, s, id, tok, nil); err == nil || resp.StatusCode != 403 {
		t.Fatalf("handshake to an expired session: %v", err)
	}
}

func TestInactivitySweep(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{MaxInactive: 500 * time.Millisecond, CleanupInterval: 5 * time.Millisecond,
		PingInterval: 5 * time.Millisecond})
	tok := s.Token(DefaultUser)
	idle := mustSession(t, s, tok)
	kept := mustSession(t, s, tok)
	c := mustDial(t, s, kept, tok) // its pings keep the session active
	c.waitFrame("ping", 0, ofType("ping"))
	eventually(t, "idle session swept", func() bool { got, _ := s.Session(idle); return !got.Live })
	if got, _ := s.Session(kept); !got.Live {
		t.Fatalf("a session with a socket was swept: %+v", got)
	}
	s.StallPings(true) // no pings, no activity
	c.waitFrame("sweep notice", 0, withContent("system", NoticeInactiveClosed))
}

func TestMessageCap(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{MaxMessages: 3})
	tok := s.Token(DefaultUser)
	id := mustSession(t, s, tok)
	c := mustDial(t, s, id, tok)
	other := mustDial(t, s, id, tok)
	c.text("one") // 1, reply 2
	c.waitFrame("reply", 0, withContent("text", "Echo: one"))
	c.text("two") // 3, reply 4: the cap is reached
	c.waitFrame("cap notice", 0, withContent("system", NoticeMaxCountClosed))
	c.text("three")
	c.waitFrame("limit notice", 0, withContent("system", NoticeMessageLimit))
	if code := websocket.CloseStatus(c.waitClosed()); code != websocket.StatusNormalClosure {
		t.Fatalf("close %v", code)
	}
	other.waitFrame("limit notice", 0, withContent("system", NoticeMessageLimit))
	eventually(t, "closed socket forgotten", func() bool { return s.Sockets(id) == 1 })
	if got, _ := s.Session(id); got.EndReason != "message cap" || got.Messages != 4 {
		t.Fatalf("session %+v", got)
	}
}
