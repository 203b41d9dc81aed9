package chatapi_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/connector/chatapi"
	"github.com/bridgeworks/bridge/connector/conntest"
	"github.com/bridgeworks/bridge/emulator/chatapiemu"
	"github.com/bridgeworks/bridge/internal/testutil"
	"github.com/bridgeworks/bridge/retry"
)

// TestConformance runs the connector conformance suite against the Chat
// API emulator: inbox items are the produced events, chats the commands.
func TestConformance(t *testing.T) {
	conntest.Run(t, conntest.Harness{New: newChatPlatform})
}

// chatPlatform drives chatapiemu for the suite: three agents whose
// inboxes are polled.
type chatPlatform struct {
	emu    *chatapiemu.Server
	agents []chatapiemu.Agent
	next   int
}

func newChatPlatform(t *testing.T) (connector.Connector, conntest.Platform) {
	emu, agents := startEmu(t, 3, chatapiemu.Options{})
	return newConnector(t, emu, agents, nil), &chatPlatform{emu: emu, agents: agents}
}

// startEmu starts an emulator with n agents besides its default one.
func startEmu(t *testing.T, n int, o chatapiemu.Options) (*chatapiemu.Server, []chatapiemu.Agent) {
	t.Helper()
	emu := chatapiemu.New(o)
	if _, err := emu.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emu.Close)
	var agents []chatapiemu.Agent
	for i := range n {
		agents = append(agents, emu.AddAgent(fmt.Sprintf("agent %d", i)))
	}
	return emu, agents
}

// testSettings are quick polls and no rate limit to speak of.
func testSettings(agents []chatapiemu.Agent, extra connector.Settings) connector.Settings {
	ids := make([]any, 0, len(agents))
	for _, a := range agents {
		ids = append(ids, a.ID)
	}
	st := connector.Settings{"inbox_agents": ids, "poll_interval": "20ms", "rate_limit": 10000.0, "rate_burst": int64(1000),
		"stream_idle_timeout": "5s"}
	for k, v := range extra {
		st[k] = v
	}
	return st
}

// newConnector builds a connector polling agents' inboxes.
func newConnector(t *testing.T, emu *chatapiemu.Server, agents []chatapiemu.Agent, extra connector.Settings) *chatapi.Connector {
	t.Helper()
	cfg := chatapi.ConfigFor(emu.BaseURL(), emu.APIKey(), testSettings(agents, extra))
	cfg.Reconnect = retry.Policy{Initial: 5 * time.Millisecond, Max: 50 * time.Millisecond}
	c, err := chatapi.New(cfg, connector.Deps{Log: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (p *chatPlatform) Produce(t *testing.T, n int) []conntest.Produced {
	out := make([]conntest.Produced, 0, n)
	for range n {
		a := p.agents[p.next%len(p.agents)]
		p.next++
		it, err := p.emu.AddInboxItem(a.ID, chatapiemu.InboxItem{Content: fmt.Sprintf("conntest reminder %d", p.next), Type: "reminder"})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, conntest.Produced{Room: a.ID, Key: it.ID})
	}
	return out
}

// Drop makes the next two polls of every inbox fail, as a lost network does.
func (p *chatPlatform) Drop(*testing.T) {
	for _, a := range p.agents {
		p.emu.FailRoute(http.MethodGet, "/api/agents/"+a.ID+"/inbox", 2, http.StatusBadGateway, 0)
	}
}

// Malformed answers one poll with a body that is not an inbox.
func (p *chatPlatform) Malformed(*testing.T) {
	p.emu.FailRoute(http.MethodGet, "/api/agents/"+p.agents[0].ID+"/inbox", 1, http.StatusOK, 0)
}

func (p *chatPlatform) Room(*testing.T) string { return p.agents[0].ID }

func (p *chatPlatform) Command(room, marker string) connector.Command {
	args, _ := json.Marshal(map[string]string{"message": marker})
	return connector.Command{ID: marker, Name: "chat", Room: room, Args: args}
}

func (p *chatPlatform) BadCommand(room string) connector.Command {
	return connector.Command{ID: "bad", Name: "chat", Room: room, Args: json.RawMessage(`{"message":"  "}`)}
}

func (p *chatPlatform) Fail(t *testing.T, room string, f conntest.Fault) {
	path := "/api/agents/" + room + "/chat/stream"
	switch f {
	case conntest.FaultRefuse:
		p.emu.FailRoute(http.MethodPost, path, 1, http.StatusForbidden, 0)
	case conntest.FaultRateLimit:
		p.emu.FailRoute(http.MethodPost, path, 1, http.StatusTooManyRequests, time.Second)
	case conntest.FaultUnavailable:
		p.emu.FailRoute(http.MethodPost, path, 1, http.StatusServiceUnavailable, 0)
	case conntest.FaultTransport:
		p.emu.HangUpRoute(http.MethodPost, path, 1)
	default:
		t.Fatalf("fault %s not supported", f)
	}
}

// Received is the user turns of the agent's history.
func (p *chatPlatform) Received(_ *testing.T, room string) []string {
	var out []string
	for _, turn := range p.emu.History(room) {
		if turn.Role == "user" && strings.HasPrefix(turn.Content, "conntest-") {
			out = append(out, turn.Content)
		}
	}
	return out
}
