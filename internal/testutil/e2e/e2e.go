package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bridgeworks/bridge/bridge"
	"github.com/bridgeworks/bridge/config"
	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/connector/band"
	"github.com/bridgeworks/bridge/emulator/bandemu"
	"github.com/bridgeworks/bridge/internal/phoenix"
	"github.com/bridgeworks/bridge/internal/testutil"
)

// Conn is the bridge connection name every stack uses.
const Conn = "agent"

// Options say which stack to start.
type Options struct {
	// Dispatch adds a [[dispatch]] rule for message_created, so the bridge
	// sends each user message to P.work… (managed dispatch). Without it a
	// worker consumes BRIDGE_EVENTS itself.
	Dispatch bool
}

// Stack is a running emulator and bridge; both stop at test cleanup.
type Stack struct {
	Emu      *bandemu.Server
	User     bandemu.User // a human who is in every room made with AddRoom
	NATSURL  string       // where workers connect: nats://127.0.0.1:<port>
	HTTPAddr string       // the bridge's /status, /metrics
}

// Start runs the Band emulator and a bridge with one Band connection
// ([Conn]) on embedded NATS, and waits until the connection is up.
func Start(t testing.TB, o Options) *Stack {
	t.Helper()
	emu := bandemu.New(bandemu.Options{HeartbeatTimeout: 2 * time.Second})
	url, err := emu.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emu.Close)

	toml := fmt.Sprintf(`
[nats.embedded]
listen = "127.0.0.1:0"
[http]
listen = "127.0.0.1:0"
[[connection]]
name = %q
platform = "band"
reconnect_initial = "5ms"
reconnect_max = "50ms"
[connection.settings]
base_url = %q
agent_id = %q
api_key_env = "BAND_KEY"
`, Conn, url, emu.AgentID())
	if o.Dispatch {
		toml += fmt.Sprintf(`
[[dispatch]]
connection = %q
events = ["message_created"]
timeout = "20s"
max_attempts = 3
backoff_initial = "10ms"
backoff_max = "200ms"
`, Conn)
	}
	cfg, err := config.Parse([]byte(toml), nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.NATS.Embedded.StoreDir = t.TempDir()

	ready := make(chan bridge.Info, 1)
	b, err := bridge.New(cfg, bridge.Options{
		Log:       testutil.Logger(t),
		Registry:  fastBand(),
		LookupEnv: func(k string) (string, bool) { return emu.APIKey(), k == "BAND_KEY" },
		OnReady:   func(i bridge.Info) { ready <- i },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }() // owned: waited for at cleanup
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("bridge: %v", err)
			}
		})
	}
	t.Cleanup(stop)

	var info bridge.Info
	select {
	case info = <-ready:
	case err := <-done:
		t.Fatalf("bridge stopped before it was ready: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("bridge not ready within 30s")
	}
	s := &Stack{Emu: emu, User: emu.AddUser("Dana Levi"), NATSURL: info.NATSClientURL, HTTPAddr: info.HTTPAddr}
	testutil.Eventually(t, 30*time.Second, func() bool { return s.connState() == "connected" }, "band connection up")
	return s
}

// fastBand is the band platform with test-sized intervals (the
// exponential reconnect part comes from the connection's reconnect_*).
func fastBand() connector.Registry {
	return connector.Registry{"band": band.Factory(false, band.Options{
		IdleResync: time.Second,
		Backoff: phoenix.Backoff{RapidFirst: 10 * time.Millisecond,
			RapidSecond: 20 * time.Millisecond, HoldDownBase: 50 * time.Millisecond, HoldDownStep: 10 * time.Millisecond,
			HoldDownMax: 100 * time.Millisecond, Refused: 50 * time.Millisecond, RestartMin: time.Millisecond, RestartMax: 5 * time.Millisecond},
	})}
}

// connState reads the connection's state from the bridge's /status.
func (s *Stack) connState() string {
	resp, err := http.Get("http://" + s.HTTPAddr + "/status")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var st struct {
		Connections []struct{ Name, State string }
	}
	if json.NewDecoder(resp.Body).Decode(&st) != nil {
		return ""
	}
	for _, c := range st.Connections {
		if c.Name == Conn {
			return c.State
		}
	}
	return ""
}

// AddRoom creates a room with the agent and [Stack.User] in it.
func (s *Stack) AddRoom(title string) bandemu.Room { return s.Emu.AddRoom(title, s.User.ID) }

// Post posts a message from [Stack.User] that mentions the agent.
func (s *Stack) Post(roomID, content string) bandemu.Message {
	return s.Emu.PostUserMessage(roomID, s.User.ID, content)
}

// WaitEchoed waits until every posted message is processed on the platform,
// then checks that each room holds exactly one agent reply per posted
// message, in posting order, ending in "echo: <content>" and mentioning the
// sender: what every example worker answers.
func (s *Stack) WaitEchoed(t testing.TB, posted ...bandemu.Message) {
	t.Helper()
	testutil.Eventually(t, 60*time.Second, func() bool {
		for _, m := range posted {
			if st, _ := s.Emu.Status(m.ID); st != bandemu.StatusProcessed {
				return false
			}
		}
		return true
	}, "%d messages processed", len(posted))
	perRoom := map[string][]bandemu.Message{}
	var rooms []string
	for _, m := range posted {
		if _, ok := perRoom[m.RoomID]; !ok {
			rooms = append(rooms, m.RoomID)
		}
		perRoom[m.RoomID] = append(perRoom[m.RoomID], m)
	}
	for _, room := range rooms {
		got := s.Emu.AgentMessages(room)
		want := perRoom[room]
		if len(got) != len(want) {
			t.Errorf("room %s: %d agent replies, want %d: %q", room, len(got), len(want), contents(got))
			continue
		}
		for i, m := range want {
			// Band writes the mentions in front of the text: "@Dana Levi echo: …".
			if !strings.HasSuffix(got[i].Content, "echo: "+m.Content) {
				t.Errorf("room %s: reply %d is %q, want it to end in %q (order or content wrong)", room, i, got[i].Content, "echo: "+m.Content)
			}
			if !slices.ContainsFunc(got[i].Mentions, func(x bandemu.Mention) bool { return x.ID == m.SenderID }) {
				t.Errorf("room %s: reply %d does not mention the sender %s: %+v", room, i, m.SenderID, got[i].Mentions)
			}
		}
	}
}

func contents(ms []bandemu.Message) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Content
	}
	return out
}
