package bandemu

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/coder/websocket"
)

func TestDropSocketsAndMalformed(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{})
	c := mustDial(t, s)
	s.SendMalformed()
	f := c.waitFrame("malformed frame", func(f frame) bool { return f.Topic == "" })
	if json.Valid([]byte(f.Raw)) {
		t.Fatalf("frame is valid JSON: %s", f.Raw)
	}
	s.DropSockets()
	if s.Connections() != 0 {
		t.Fatal("dropped socket still counted")
	}
	if code := websocket.CloseStatus(c.waitClosed()); code != -1 {
		t.Fatalf("abrupt drop sent close code %v", code)
	}
	// A reconnect works.
	again := mustDial(t, s)
	again.sendRaw(`[null,"1","phoenix","heartbeat",{}]`)
	again.reply("1")
}

func TestMalformedClientFrameCloses(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{})
	c := mustDial(t, s)
	c.sendRaw(`{"topic":"phoenix","event":"heartbeat","payload":{},"ref":"1"}`) // a v1 frame
	if code := websocket.CloseStatus(c.waitClosed()); code != websocket.StatusUnsupportedData {
		t.Fatalf("close code %v", code)
	}
	eventually(t, "socket forgotten", func() bool { return s.Connections() == 0 })
}

func TestCloseClosesSockets(t *testing.T) {
	t.Parallel()
	s := New(Options{})
	if _, err := s.Start(); err != nil {
		t.Fatal(err)
	}
	c := mustDial(t, s)
	c.mustJoin("agent_rooms:" + s.AgentID())
	s.Close()
	if code := websocket.CloseStatus(c.waitClosed()); code != websocket.StatusGoingAway {
		t.Fatalf("close code %v", code)
	}
	s.Close() // idempotent
	if s.Connections() != 0 {
		t.Fatal("connections after Close")
	}
}

// TestManyAgents connects many agents to one emulator, each with a
// room, and checks every one gets its own message and nobody else's.
func TestManyAgents(t *testing.T) {
	t.Parallel()
	const n = 100
	s := newServer(t, Options{})
	user := s.AddUser("Load")
	type agentConn struct {
		a    Agent
		room Room
		c    *phxClient
	}
	conns := make([]agentConn, n)
	for i := range conns {
		a := s.AddAgent(fmt.Sprint("agent ", i))
		conns[i] = agentConn{a: a, room: s.AddRoomFor(a.ID, "room", user.ID), c: dialAgent(t, s, a)}
	}
	var wg sync.WaitGroup
	for _, ac := range conns {
		wg.Go(func() {
			ac.c.mustJoin("chat_room:" + ac.room.ID)
		})
	}
	wg.Wait()
	if s.Connections() != n {
		t.Fatalf("connections %d", s.Connections())
	}
	for _, ac := range conns {
		s.PostUserMessage(ac.room.ID, user.ID, "hi "+ac.a.ID)
	}
	for _, ac := range conns {
		f := ac.c.push("chat_room:"+ac.room.ID, "message_created")
		if f.Payload["content"] != "hi "+ac.a.ID {
			t.Fatalf("agent %s got %s", ac.a.ID, f.Raw)
		}
		if len(s.PendingFor(ac.a.ID, ac.room.ID)) != 1 {
			t.Fatal("pending per agent")
		}
	}
}

func TestListenAndServe(t *testing.T) {
	t.Parallel()
	s := New(Options{})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.ListenAndServe(ctx, "127.0.0.1:0") }()
	eventually(t, "listening", func() bool { return s.URL() != "" })
	expectStatus(t, api(t, s, "GET", "/api/v1/agent/me", nil), 200)
	c := mustDial(t, s)
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	c.waitClosed()
}

func TestHangUpRoute(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{})
	room := s.AddRoom("hang-up")
	path := "/api/v1/agent/chats/" + room.ID + "/messages"
	s.HangUpRoute(http.MethodPost, path, 1)
	req, err := http.NewRequest(http.MethodPost, s.URL()+path, strings.NewReader(`{"message":{"content":"x"}}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-API-Key", s.APIKey())
	req.Header.Set("Content-Type", "application/json")
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("hung-up call answered %d", resp.StatusCode)
	}
	if n := len(s.Messages(room.ID)); n != 0 {
		t.Fatalf("hung-up call stored %d messages", n)
	}
	// Only the route, and only once.
	expectStatus(t, api(t, s, "GET", "/api/v1/agent/me", nil), 200)
	s.HangUpRoute(http.MethodPost, path, 0)
	r := api(t, s, "POST", path, map[string]any{"message": map[string]any{"content": "hi"}})
	if r.Status == 0 {
		t.Fatal("route still hangs up")
	}
}
