package agentconnect_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/connector/agentconnect"
	"github.com/bridgeworks/bridge/connector/conntest"
	"github.com/bridgeworks/bridge/emulator/agentconnectemu"
	"github.com/bridgeworks/bridge/internal/testutil"
)

// TestConformance runs the connector conformance suite against the
// AgentConnect emulator.
//
// The platform replays nothing, so the driver produces a frame only once
// the connector's socket of that session is attached, and cuts sockets
// only once every frame sent so far was written (a frame in a socket's
// queue at a cut is lost on this platform: that is what gap_possible
// reports, and TestSocketDropGapPossible checks it).
//
// The suite's command faults are HTTP answers; they apply to the REST
// commands, so its command is create_session (its marker in the session's
// metadata). send_message's failures (cooldown, stop, error frames, a lost
// socket) have their own tests.
func TestConformance(t *testing.T) {
	conntest.Run(t, conntest.Harness{New: newACPlatform})
}

type acPlatform struct {
	emu      *agentconnectemu.Server
	sessions []string
	next     int
}

func newACPlatform(t *testing.T) (connector.Connector, conntest.Platform) {
	emu, url := fastEmu(t, agentconnectemu.Options{})
	c := newConn(t, emu, url, nil)
	p := &acPlatform{emu: emu}
	for range 3 {
		p.sessions = append(p.sessions, createSession(t, c, "human_agent", nil))
	}
	return c, p
}

// Closed waits until the emulator has forgotten every socket of the
// closed connector (conntest.Closer): a frame sent to a socket on its way
// out is lost, and attached would take that socket for the next session's.
func (p *acPlatform) Closed(t *testing.T) {
	for _, id := range p.sessions {
		testutil.Eventually(t, 20*time.Second, func() bool { return p.emu.Sockets(id) == 0 }, "the closed connector's socket of %s is gone", id)
	}
}

// attached waits until the connector's socket of session id is open.
func (p *acPlatform) attached(t *testing.T, id string) {
	testutil.Eventually(t, 20*time.Second, func() bool { return p.emu.Sockets(id) == 1 }, "the connector's socket of %s is open", id)
}

func (p *acPlatform) Produce(t *testing.T, n int) []conntest.Produced {
	out := make([]conntest.Produced, 0, n)
	for range n {
		id := p.sessions[p.next%len(p.sessions)]
		p.next++
		p.attached(t, id)
		raw := fmt.Sprintf(`{"type":"text","content":"conntest %d","sender":"ai1_%s","receiver":"human_%s","timestamp":"%s","metadata":null}`,
			p.next, id, id, time.Now().UTC().Format("2006-01-02T15:04:05.000000+00:00"))
		p.emu.SendRaw(id, raw)
		out = append(out, conntest.Produced{Room: id, Key: agentconnect.FrameKey(id, []byte(raw), 1)})
	}
	return out
}

func (p *acPlatform) Drop(t *testing.T) {
	for _, id := range p.sessions {
		testutil.Eventually(t, 10*time.Second, func() bool { return p.emu.Unwritten(id) == 0 }, "frames of %s written", id)
	}
	p.emu.DropSockets("")
}

func (p *acPlatform) Malformed(t *testing.T) {
	p.attached(t, p.sessions[0])
	p.emu.SendRaw(p.sessions[0], `{"type": 42, "content": "not a frame"`)
	p.emu.SendRaw(p.sessions[0], `[1, 2, 3]`)
}

func (p *acPlatform) Room(*testing.T) string { return p.sessions[0] }

func (p *acPlatform) Command(_, marker string) connector.Command {
	args, _ := json.Marshal(map[string]any{"session_type": "human_agent",
		"agents": map[string]any{"main": map[string]string{"provider": "groq"}}, "metadata": map[string]string{"marker": marker}})
	return connector.Command{ID: marker, Name: "create_session", Args: args}
}

func (p *acPlatform) BadCommand(room string) connector.Command {
	return connector.Command{ID: "bad", Name: "send_message", Room: room, Args: json.RawMessage(`{"content":"   "}`)}
}

func (p *acPlatform) Fail(t *testing.T, _ string, f conntest.Fault) {
	switch f {
	case conntest.FaultRefuse:
		p.emu.FailRoute(http.MethodPost, agentconnectemu.CreatePath, 1, http.StatusForbidden, 0)
	case conntest.FaultRateLimit:
		p.emu.FailRoute(http.MethodPost, agentconnectemu.CreatePath, 1, http.StatusTooManyRequests, time.Second)
	case conntest.FaultUnavailable:
		p.emu.FailRoute(http.MethodPost, agentconnectemu.CreatePath, 1, http.StatusServiceUnavailable, 0)
	case conntest.FaultTransport:
		p.emu.HangUpRoute(http.MethodPost, agentconnectemu.CreatePath, 1)
	default:
		t.Fatalf("fault %s not supported", f)
	}
}

// Received returns the markers of the sessions created (create_session
// takes no room).
func (p *acPlatform) Received(_ *testing.T, _ string) []string {
	var out []string
	for _, s := range p.emu.Sessions() {
		var m struct {
			Marker string `json:"marker"`
		}
		if json.Unmarshal(s.Metadata, &m) == nil && strings.TrimSpace(m.Marker) != "" {
			out = append(out, m.Marker)
		}
	}
	return out
}
