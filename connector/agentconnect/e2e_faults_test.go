package agentconnect_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/bridgeworks/bridge/emulator/agentconnectemu"
	"github.com/bridgeworks/bridge/internal/testutil"
	"github.com/bridgeworks/bridge/subjects"
)

// sendAll sends n messages in room one after another and checks each
// answer.
func sendAll(t *testing.T, w *worker, room, tag string, n int) {
	t.Helper()
	for i := range n {
		id := fmt.Sprintf("%s-%d", tag, i)
		w.command(room, "send_message", id, map[string]string{"content": id})
	}
	for i := range n {
		id := fmt.Sprintf("%s-%d", tag, i)
		r, _ := w.result(id, 30*time.Second)
		if got := replyContent(t, r); got != "Echo: "+id {
			t.Errorf("%s answered %q", id, got)
		}
	}
}

// TestBridgeTokenExpiryMidRun: tokens live 2s and the platform also
// expires them early; REST calls log in again on a 401, a redial logs in
// again on a 403, and no command is lost.
func TestBridgeTokenExpiryMidRun(t *testing.T) {
	t.Parallel()
	emu, _ := fastEmu(t, agentconnectemu.Options{TokenLifetime: 2 * time.Second})
	natsURL, _ := runBridge(t, emu, t.TempDir())
	w := newWorker(t, natsURL)
	room := w.createSession()
	testutil.Eventually(t, 20*time.Second, func() bool { return emu.Sockets(room) == 1 }, "socket of %s", room)
	sendAll(t, w, room, "before", 3)

	if n := emu.ExpireTokens(agentconnectemu.DefaultUser); n == 0 {
		t.Fatal("no token to expire: the connector never logged in")
	}
	second := w.createSession() // REST with a refused token: 401, login, again
	emu.DropSockets(room)       // the redial's token is refused: 403, login, again
	// A command sent while the connector has not yet seen the drop goes out
	// on the dying socket and is rightly answered unknown_outcome: wait for
	// the redial (its gap_possible) first.
	testutil.Eventually(t, 20*time.Second, func() bool { return w.lifecycles(subjects.LifecycleGapPossible, room) == 1 }, "redial of %s", room)
	sendAll(t, w, room, "after", 3)
	testutil.Eventually(t, 20*time.Second, func() bool { return emu.Sockets(second) == 1 }, "socket of %s", second)
	sendAll(t, w, second, "second", 2)

	// REST calls across more than a token's lifetime: each one runs with
	// a token renewed ahead of its exp (or logs in again after a 401).
	deadline := time.Now().Add(2500 * time.Millisecond)
	for i := 0; time.Now().Before(deadline); i++ {
		id := w.createSession()
		if r := w.rpc("end_session", map[string]any{"room": id}); !r.OK {
			t.Fatalf("end_session %d during renewal: %+v (%+v)", i, r, r.Error)
		}
	}
	sendAll(t, w, room, "late", 2)
}

// TestBridgeSocketDropGapPossible: a dropped socket is redialled and
// gap_possible names the session; a fresh session reports none.
func TestBridgeSocketDropGapPossible(t *testing.T) {
	t.Parallel()
	emu, _ := fastEmu(t, agentconnectemu.Options{})
	natsURL, _ := runBridge(t, emu, t.TempDir())
	w := newWorker(t, natsURL)
	room := w.createSession()
	testutil.Eventually(t, 20*time.Second, func() bool { return emu.Sockets(room) == 1 }, "socket of %s", room)
	sendAll(t, w, room, "steady", 1)
	if n := w.lifecycles(subjects.LifecycleGapPossible, room); n != 0 {
		t.Fatalf("%d gap_possible events for a fresh session", n)
	}
	emu.DropSockets(room)
	testutil.Eventually(t, 20*time.Second, func() bool { return w.lifecycles(subjects.LifecycleGapPossible, room) == 1 }, "gap_possible for %s", room)
	sendAll(t, w, room, "after", 2)

	// Silence (no pings) past ping_timeout also redials.
	emu.StallPings(true)
	testutil.Eventually(t, 20*time.Second, func() bool { return w.lifecycles(subjects.LifecycleGapPossible, room) >= 2 }, "gap_possible after a silent socket")
	emu.StallPings(false)
	if n := emu.Sockets(room); n > 1 {
		t.Errorf("%d sockets for one session", n)
	}
}

// TestBridgeBadFramesAndRefusedHandshakes: frames that do not parse are
// skipped, unknown ones forwarded; refused handshakes are retried (with a
// new login) until the socket opens; a session gone on the platform ends
// with session_ended; the connection keeps serving throughout.
func TestBridgeBadFramesAndRefusedHandshakes(t *testing.T) {
	t.Parallel()
	emu, _ := fastEmu(t, agentconnectemu.Options{})
	natsURL, _ := runBridge(t, emu, t.TempDir())
	w := newWorker(t, natsURL)
	room, doomed := w.createSession(), w.createSession()
	for _, r := range []string{room, doomed} {
		testutil.Eventually(t, 20*time.Second, func() bool { return emu.Sockets(r) == 1 }, "socket of %s", r)
	}
	emu.SendRaw(room, "not json")
	emu.SendRaw(room, `{"type": 7}`)
	emu.SendRaw(room, `{"type":"text","content":{"nested":true}}`)
	emu.SendRaw(room, `{"type":"thought","content":"a type the platform may add"}`)
	emu.SendRaw(room, `{"type":"system","content":"A notice nobody listed."}`)
	testutil.Eventually(t, 20*time.Second, func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		n := 0
		for _, ev := range w.events {
			if ev.Room == room && (ev.Type == "agentconnect.thought" || ev.Type == "agentconnect.system") {
				n++
			}
		}
		return n == 2
	}, "unknown frame type and notice forwarded")
	sendAll(t, w, room, "after-bad-frames", 1)

	emu.RejectHandshakes(3)
	emu.DropSockets(room)
	testutil.Eventually(t, 20*time.Second, func() bool { return w.lifecycles(subjects.LifecycleGapPossible, room) == 1 }, "socket reopened after three 403s")
	sendAll(t, w, room, "after-403", 1)

	emu.EndSession(doomed, "") // gone on the platform without a notice
	emu.DropSockets(doomed)
	testutil.Eventually(t, 20*time.Second, func() bool { return w.lifecycles(subjects.LifecycleSessionEnded, doomed) == 1 }, "session_ended for a session the platform forgot")
	r := w.rpc("sessions", map[string]any{})
	var open struct {
		Sessions []struct {
			ID string `json:"session_id"`
		} `json:"sessions"`
	}
	if err := json.Unmarshal(r.Data, &open); err != nil || len(open.Sessions) != 1 || open.Sessions[0].ID != room {
		t.Errorf("open sessions after the loss: %s", r.Data)
	}
	w.command(doomed, "send_message", "to-doomed", map[string]string{"content": "anyone?"})
	if res, _ := w.result("to-doomed", 20*time.Second); res.OK || res.Error == nil || res.Error.Code != "unknown_session" {
		t.Errorf("send_message to an ended session: %+v (%+v)", res, res.Error)
	}
	sendAll(t, w, room, "still-serving", 1)
}

// TestBridgeRestartReattaches: a new bridge on the same NATS store
// reattaches every session the previous one had open.
func TestBridgeRestartReattaches(t *testing.T) {
	t.Parallel()
	emu, _ := fastEmu(t, agentconnectemu.Options{})
	store := t.TempDir()
	natsURL, stop := runBridge(t, emu, store)
	w := newWorker(t, natsURL)
	var rooms []string
	for range 3 {
		rooms = append(rooms, w.createSession())
	}
	for _, r := range rooms {
		testutil.Eventually(t, 20*time.Second, func() bool { return emu.Sockets(r) == 1 }, "socket of %s", r)
	}
	w.nc.Close()
	stop()
	for _, r := range rooms {
		testutil.Eventually(t, 20*time.Second, func() bool { return emu.Sockets(r) == 0 }, "socket of %s closed with the bridge", r)
	}

	natsURL, _ = runBridge(t, emu, store)
	w = newWorker(t, natsURL)
	for _, r := range rooms {
		testutil.Eventually(t, 30*time.Second, func() bool { return emu.Sockets(r) == 1 }, "socket of %s reattached", r)
		testutil.Eventually(t, 20*time.Second, func() bool { return w.lifecycles(subjects.LifecycleGapPossible, r) == 1 }, "gap_possible for %s", r)
		sendAll(t, w, r, r+"-after-restart", 1)
	}
}
