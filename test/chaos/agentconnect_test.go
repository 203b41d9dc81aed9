//go:build chaos

package chaos

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bridgeworks/bridge/connector/agentconnect"
	"github.com/bridgeworks/bridge/emulator/agentconnectemu"
	"github.com/bridgeworks/bridge/internal/testutil"
	"github.com/bridgeworks/bridge/subjects"
)

// TestChaosAgentConnectReattach runs the real bridge binary and a
// nats-server process with an agentconnect connection; a worker creates
// sessions with durable create_session commands and talks in each, then
// the bridge is SIGKILLed and restarted, twice. After each restart every
// session has exactly one socket again, a gap_possible event, and a new
// send_message in each gets the AI's reply; no session is ever created
// twice on the platform.
func TestChaosAgentConnectReattach(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos test: not in -short runs")
	}
	const acConn, nSessions, kills = "ac-chaos", 10, 2
	const acUser, acPass = "chaos-user", "chaos-user-pass"
	dir := t.TempDir()
	bin := build(t, dir, "bridge", "github.com/bridgeworks/bridge/cmd/bridge")
	natsBin := build(t, dir, "nats-server", "github.com/nats-io/nats-server/v2")

	emu := agentconnectemu.New(agentconnectemu.Options{
		PingInterval:       200 * time.Millisecond,
		ReplyTimeout:       2 * time.Second,
		MaxSessionsPerUser: -1,
		TokenBudget:        -1,
		MaxTurns:           -1,
		NoRateLimits:       true,
	})
	if _, err := emu.Start(); err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	emu.AddUser(acUser, acPass)

	natsPort, httpPort := freePort(t), freePort(t)
	natsURL := fmt.Sprintf("nats://127.0.0.1:%d", natsPort)
	ns := start(t, "nats-server", filepath.Join(dir, "nats.log"), nil, natsBin, "-a", "127.0.0.1", "-p", fmt.Sprint(natsPort), "-js", "-sd", filepath.Join(dir, "js"))
	defer ns.stop(t)
	cfgPath := filepath.Join(dir, "bridge.toml")
	cfg := fmt.Sprintf(`
[log]
level = "debug"
[nats]
url = %q
[http]
listen = "127.0.0.1:%d"
[lease]
ttl = "2s"
owner = "chaos-agentconnect"
[[connection]]
name = %q
platform = "agentconnect"
reconnect_initial = "20ms"
reconnect_max = "200ms"
[connection.settings]
base_url = %q
username_env = "AC_USERNAME"
password_env = "AC_PASSWORD"
ping_timeout = "5s"
reply_timeout = "5s"
`, natsURL, httpPort, acConn, emu.URL())
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "bridge.log")
	runBridge := func() *proc {
		return start(t, "bridge", logPath, []string{"AC_USERNAME=" + acUser, "AC_PASSWORD=" + acPass}, bin, "run", "--config", cfgPath)
	}
	br := runBridge()
	defer func() { br.stop(t) }()
	defer func() {
		if t.Failed() {
			t.Logf("bridge log tail:\n%s", tail(logPath, 60))
		}
	}()

	// The worker stays connected to the nats-server while the bridge
	// dies: it sees every result and lifecycle event.
	w := newCmdWorker(t, natsURL, agentconnect.Platform, acConn)
	var mu sync.Mutex
	gaps := map[string]int{} // gap_possible by room
	if _, err := w.nc.Subscribe(w.subject("sys", string(subjects.LifecycleGapPossible)), func(m *nats.Msg) {
		ev, err := subjects.DecodeEvent(m.Data)
		if err != nil {
			t.Errorf("lifecycle on %s: %v", m.Subject, err)
			return
		}
		mu.Lock()
		gaps[ev.Room]++
		mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	if err := w.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	w.waitServing("sessions")
	command, result := w.command, w.result
	// talk sends one message in every room and checks every answer.
	talk := func(rooms []string, tag string) {
		t.Helper()
		for _, r := range rooms {
			command(r, "send_message", r+"-"+tag, map[string]string{"content": tag + " " + r})
		}
		for _, r := range rooms {
			res := result(r + "-" + tag)
			var f struct{ Type, Content string }
			if !res.OK || json.Unmarshal(res.Data, &f) != nil || f.Type != "text" || f.Content != "Echo: "+tag+" "+r {
				t.Fatalf("send_message %s-%s: %+v (error %+v)", r, tag, res, res.Error)
			}
		}
	}
	socketsAre := func(rooms []string, want int, what string) {
		t.Helper()
		for _, r := range rooms {
			testutil.Eventually(t, 20*time.Second, func() bool { return emu.Sockets(r) == want }, "%d socket(s) of %s (%s)", want, r, what)
		}
	}

	// The sessions, each created by a durable command.
	var rooms []string
	for i := range nSessions {
		command(subjects.NoRoom, "create_session", fmt.Sprintf("create-%d", i), map[string]any{
			"session_type": "human_agent",
			"agents":       map[string]any{"ai": map[string]string{"provider": "groq"}},
			"metadata":     map[string]any{"chaos": i},
		})
	}
	for i := range nSessions {
		res := result(fmt.Sprintf("create-%d", i))
		var d struct {
			SessionID string `json:"session_id"`
		}
		if !res.OK || json.Unmarshal(res.Data, &d) != nil || d.SessionID == "" {
			t.Fatalf("create_session %d: %+v (error %+v)", i, res, res.Error)
		}
		rooms = append(rooms, d.SessionID)
	}
	socketsAre(rooms, 1, "created")
	talk(rooms, "before")

	for k := 1; k <= kills; k++ {
		br.kill()
		socketsAre(rooms, 0, fmt.Sprintf("kill %d", k))
		br = runBridge()
		socketsAre(rooms, 1, fmt.Sprintf("reattached after kill %d", k))
		for _, r := range rooms {
			testutil.Eventually(t, 20*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return gaps[r] >= k }, "gap_possible %d for %s", k, r)
		}
		talk(rooms, fmt.Sprintf("after-kill-%d", k))
	}

	// No session created twice, none lost, none ended; one socket each.
	sessions := emu.Sessions()
	created := map[string]int{}
	for _, s := range sessions {
		created[s.ID]++
		if s.Owner != acUser {
			t.Errorf("session %s owned by %q", s.ID, s.Owner)
		}
		if !s.Live {
			t.Errorf("session %s ended (%s)", s.ID, s.EndReason)
		}
		if s.Sockets != 1 {
			t.Errorf("session %s has %d sockets, want 1", s.ID, s.Sockets)
		}
	}
	if len(sessions) != nSessions {
		t.Errorf("the platform has %d sessions, the worker created %d", len(sessions), nSessions)
	}
	for _, r := range rooms {
		if created[r] != 1 {
			t.Errorf("session %s: %d on the platform", r, created[r])
		}
	}
	// Every message reached the platform once: the client's text frames
	// per session are the 1+kills messages sent.
	for _, r := range rooms {
		var texts []string
		for _, f := range emu.Received(r) {
			if f.Type == "text" {
				texts = append(texts, f.Content)
			}
		}
		if len(texts) != 1+kills {
			t.Errorf("session %s received %d texts, want %d: %q", r, len(texts), 1+kills, texts)
		}
	}
	mu.Lock()
	gapCounts, resultRepeats := []string{}, 0
	for _, r := range rooms {
		gapCounts = append(gapCounts, fmt.Sprint(gaps[r]))
	}
	mu.Unlock()
	resultRepeats = w.republished()
	report := fmt.Sprintf("chaos-agentconnect: sessions=%d bridge_kills=%d platform_sessions=%d gap_possible_per_session=[%s] results_published_again=%d",
		nSessions, kills, len(sessions), strings.Join(gapCounts, " "), resultRepeats)
	t.Log(report)
	fmt.Println(report)
}
