package polyai_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/connector/conntest"
	"github.com/bridgeworks/bridge/connector/polyai"
	"github.com/bridgeworks/bridge/emulator/polyaiemu"
	"github.com/bridgeworks/bridge/internal/testutil"
	"github.com/bridgeworks/bridge/subjects"
)

// received collects what a connector hands to Receive (acking each
// event) until the test ends.
type received struct {
	mu  sync.Mutex
	evs []connector.Event
}

func drain(t *testing.T, c *polyai.Connector) *received {
	t.Helper()
	r := &received{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			ev, ack, err := c.Receive(ctx)
			if err != nil {
				return
			}
			ack(ctx, nil)
			r.mu.Lock()
			r.evs = append(r.evs, ev)
			r.mu.Unlock()
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return r
}

// has reports whether an event of room matches name or lifecycle.
func (r *received) has(room, name string, lc subjects.Lifecycle) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ev := range r.evs {
		if (room == "" || ev.Room == room) && ((name != "" && ev.Name == name) || (lc != "" && ev.Lifecycle == lc)) {
			return true
		}
	}
	return false
}

// heldSessions returns the ids of the connector's sessions read.
func heldSessions(t *testing.T, c *polyai.Connector) map[string]bool {
	t.Helper()
	resp, err := c.Execute(context.Background(), connector.Command{Name: "sessions"})
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Sessions []struct {
			ID        string `json:"session_id"`
			Connected bool   `json:"connected"`
		} `json:"sessions"`
	}
	if err := json.Unmarshal(resp.Data, &d); err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, s := range d.Sessions {
		out[s.ID] = s.Connected
	}
	return out
}

// TestPlatformEndsSession: a session the platform ends (SESSION_END,
// then a 1000 close; later handshakes get 404) is forgotten and never
// replaced, whether the SESSION_END reached its socket or came while the
// socket was down; end_session for it then answers ok, other commands
// session_ended.
func TestPlatformEndsSession(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, when string
	}{
		{"socket open", "open"},     // SESSION_END read on the socket
		{"socket down", "down"},     // the redial meets 404
		{"just created", "created"}, // either, as the race goes
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			emu, url := startEmu(t, polyaiemu.Options{NoAutoReply: true})
			st := conntest.NewMemState()
			c := newConnector(t, emu, url, st)
			if err := c.Connect(context.Background()); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = c.Close(context.Background()) })
			got := drain(t, c)
			resp, err := c.Execute(context.Background(), connector.Command{ID: "create", Name: "create_session"})
			if err != nil {
				t.Fatal(err)
			}
			id := resp.Ref
			if tc.when != "created" {
				testutil.Eventually(t, 10*time.Second, func() bool { return heldSessions(t, c)[id] }, "socket open")
			}
			if tc.when == "down" {
				emu.RejectHandshakes(1<<20, 503, 0)
				emu.DropSockets(id)
				info, _ := emu.Session(id)
				testutil.Eventually(t, 10*time.Second, func() bool {
					now, _ := emu.Session(id)
					return now.Sockets == 0 && now.Handshakes > info.Handshakes
				}, "redials refused")
			}
			if !emu.EndSession(id, polyaiemu.ReasonNaturalEnd) {
				t.Fatal("emulator: session not ended")
			}
			emu.RejectHandshakes(0, 0, 0)
			testutil.Eventually(t, 10*time.Second, func() bool {
				_, held := heldSessions(t, c)[id]
				_, kept := records(t, st)[id]
				return !held && !kept
			}, "session forgotten")
			switch tc.when {
			case "open":
				testutil.Eventually(t, 10*time.Second, func() bool { return got.has(id, "session_end", "") }, "session_end event")
			case "down":
				testutil.Eventually(t, 10*time.Second, func() bool { return got.has(id, "", subjects.LifecycleSessionEnded) }, "session_ended lifecycle")
			}
			r, err := c.Execute(context.Background(), connector.Command{ID: "end", Name: "end_session", Room: id})
			if err != nil || r.Status != 200 {
				t.Errorf("end_session after the end: %+v, %v", r, err)
			}
			_, err = c.Execute(context.Background(), connector.Command{ID: "msg", Name: "send_message", Room: id, Args: json.RawMessage(`{"text":"hi"}`)})
			var pe *connector.PlatformError
			if !errors.As(err, &pe) || pe.Code != "session_ended" {
				t.Errorf("send_message after the end: %v, want session_ended", err)
			}
			if got.has("", "", subjects.LifecycleSessionReplaced) || len(emu.Sessions()) != 1 {
				t.Errorf("the ended session was replaced (%d sessions on the platform)", len(emu.Sessions()))
			}
		})
	}
}

// TestExpiredSessionReplaced: a held session PolyAI dropped for
// inactivity while the bridge was away (404 at the handshake, its last
// sign of life older than the idle lifetime) is still replaced.
func TestExpiredSessionReplaced(t *testing.T) {
	t.Parallel()
	emu, url := startEmu(t, polyaiemu.Options{NoAutoReply: true})
	st := conntest.NewMemState()
	s, err := emu.CreateSession(polyaiemu.SessionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	hold(t, st, s) // no creation time: as old as can be
	emu.ExpireSession(s.ID)
	c := newConnector(t, emu, url, st)
	if err := c.Connect(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	got := drain(t, c)
	testutil.Eventually(t, 10*time.Second, func() bool { return got.has(s.ID, "", subjects.LifecycleSessionReplaced) }, "session_replaced")
	if got.has(s.ID, "", subjects.LifecycleSessionEnded) {
		t.Error("the expired session was reported ended, not replaced")
	}
}
