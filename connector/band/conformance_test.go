package band_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/connector/band"
	"github.com/bridgeworks/bridge/connector/conntest"
	"github.com/bridgeworks/bridge/emulator/bandemu"
	"github.com/bridgeworks/bridge/internal/phoenix"
	"github.com/bridgeworks/bridge/internal/testutil"
)

// TestConformance runs the connector conformance suite against the Band
// emulator.
func TestConformance(t *testing.T) {
	conntest.Run(t, conntest.Harness{
		New:      newBandPlatform,
		Packages: []string{"github.com/bridgeworks/bridge/internal/phoenix"},
	})
}

// bandPlatform drives bandemu for the suite: a user in three rooms with the
// agent, whose mentioning messages are the produced events.
type bandPlatform struct {
	emu   *bandemu.Server
	user  bandemu.User
	rooms []bandemu.Room
	next  int
}

func newBandPlatform(t *testing.T) (connector.Connector, conntest.Platform) {
	emu := bandemu.New(bandemu.Options{HeartbeatTimeout: 5 * time.Second})
	url, err := emu.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emu.Close)
	p := &bandPlatform{emu: emu, user: emu.AddUser("Conn Test")}
	for i := range 3 {
		p.rooms = append(p.rooms, emu.AddRoom(fmt.Sprintf("conntest %d", i), p.user.ID))
	}
	return newBandConnector(t, url, emu), p
}

// newBandConnector builds a Band connector for the emulator at url.
func newBandConnector(t *testing.T, url string, emu *bandemu.Server) connector.Connector {
	f := band.Factory(false, band.Options{
		HeartbeatInterval: time.Second,
		Backoff: phoenix.Backoff{Base: 5 * time.Millisecond, Max: 50 * time.Millisecond, RapidFirst: 10 * time.Millisecond,
			RapidSecond: 20 * time.Millisecond, HoldDownBase: 50 * time.Millisecond, HoldDownStep: 10 * time.Millisecond,
			HoldDownMax: 100 * time.Millisecond, Refused: 50 * time.Millisecond, RestartMin: time.Millisecond, RestartMax: 5 * time.Millisecond},
	})
	c, err := f.New(band.ConfigFor(url, emu.AgentID(), emu.APIKey()), connector.Deps{Log: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (p *bandPlatform) Produce(t *testing.T, n int) []conntest.Produced {
	out := make([]conntest.Produced, 0, n)
	for range n {
		r := p.rooms[p.next%len(p.rooms)]
		p.next++
		m := p.emu.PostUserMessage(r.ID, p.user.ID, fmt.Sprintf("conntest message %d", p.next))
		if m.ID == "" {
			t.Fatalf("bandemu did not post in room %s", r.ID)
		}
		out = append(out, conntest.Produced{Room: r.ID, Key: m.ID})
	}
	return out
}

func (p *bandPlatform) Drop(*testing.T)      { p.emu.DropSockets() }
func (p *bandPlatform) Malformed(*testing.T) { p.emu.SendMalformed() }
func (p *bandPlatform) Room(*testing.T) string {
	return p.rooms[0].ID
}

func (p *bandPlatform) Command(room, marker string) connector.Command {
	args, _ := json.Marshal(map[string]any{"content": marker, "mentions": []map[string]string{{"id": p.user.ID}}})
	return connector.Command{ID: marker, Name: "send_message", Room: room, Args: args}
}

func (p *bandPlatform) BadCommand(room string) connector.Command {
	return connector.Command{ID: "bad", Name: "send_message", Room: room, Args: json.RawMessage(`{"mentions":[]}`)}
}

func (p *bandPlatform) Fail(t *testing.T, room string, f conntest.Fault) {
	path := "/api/v1/agent/chats/" + room + "/messages"
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

func (p *bandPlatform) Received(_ *testing.T, room string) []string {
	var out []string
	for _, m := range p.emu.AgentMessages(room) {
		out = append(out, m.Content)
	}
	return out
}

// ProcessingState reads the agent's processing state of a message.
func (p *bandPlatform) ProcessingState(_ *testing.T, _, id string) (connector.ProcessingState, bool) {
	st, _ := p.emu.Status(id)
	switch st {
	case bandemu.StatusProcessing:
		return connector.Processing, true
	case bandemu.StatusProcessed:
		return connector.Processed, true
	case bandemu.StatusFailed:
		return connector.Failed, true
	}
	return 0, false
}
