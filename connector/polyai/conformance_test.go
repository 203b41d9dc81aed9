package polyai_test

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/connector/conntest"
	"github.com/bridgeworks/bridge/emulator/polyaiemu"
)

// TestConformance runs the connector conformance suite against the PolyAI
// emulator.
func TestConformance(t *testing.T) {
	conntest.Run(t, conntest.Harness{New: newPolyPlatform})
}

// polyPlatform drives polyaiemu for the suite: three sessions the
// connector holds (from its state store), the agent's messages as the
// produced events, user messages as the commands.
type polyPlatform struct {
	emu      *polyaiemu.Server
	sessions []string
	next     int
}

func newPolyPlatform(t *testing.T) (connector.Connector, conntest.Platform) {
	emu, url := startEmu(t, polyaiemu.Options{NoAutoReply: true})
	st := conntest.NewMemState()
	p := &polyPlatform{emu: emu}
	for range 3 {
		s, err := emu.CreateSession(polyaiemu.SessionOptions{})
		if err != nil {
			t.Fatal(err)
		}
		hold(t, st, s)
		p.sessions = append(p.sessions, s.ID)
	}
	return newConnector(t, emu, url, st), p
}

func (p *polyPlatform) Produce(t *testing.T, n int) []conntest.Produced {
	out := make([]conntest.Produced, 0, n)
	for range n {
		sid := p.sessions[p.next%len(p.sessions)]
		p.next++
		if !p.emu.Say(sid, polyaiemu.AgentMessage{Text: fmt.Sprintf("conntest message %d", p.next)}) {
			t.Fatalf("polyaiemu: session %s cannot speak", sid)
		}
		h := p.emu.History(sid)
		out = append(out, conntest.Produced{Room: sid, Key: h[len(h)-1].ID})
	}
	return out
}

func (p *polyPlatform) Drop(*testing.T) { p.emu.DropSockets("") }

func (p *polyPlatform) Malformed(*testing.T) {
	for _, s := range p.sessions {
		p.emu.SendMalformed(s)
	}
}

func (p *polyPlatform) Room(*testing.T) string { return p.sessions[0] }

func (p *polyPlatform) Command(room, marker string) connector.Command {
	args, _ := json.Marshal(map[string]string{"text": marker})
	return connector.Command{ID: marker, Name: "send_message", Room: room, Args: args}
}

func (p *polyPlatform) BadCommand(room string) connector.Command {
	return connector.Command{ID: "bad", Name: "send_message", Room: room, Args: json.RawMessage(`{"text":"  "}`)}
}

func (p *polyPlatform) Fail(t *testing.T, room string, f conntest.Fault) {
	switch f {
	case conntest.FaultRefuse:
		p.emu.RefuseUserMessages(room, 1, "Unknown event type or invalid message format")
	case conntest.FaultRateLimit:
		p.emu.RefuseUserMessages(room, 1, "Our system is experiencing high load. Please try again in a moment.")
	case conntest.FaultUnavailable:
		p.emu.RefuseUserMessages(room, 1, "Error: Unable to retrieve session")
	case conntest.FaultTransport: // the message is lost on the way: the connector sends it again
		p.emu.DropUserMessages(room, 1)
	default:
		t.Fatalf("fault %s not supported", f)
	}
}

func (p *polyPlatform) Received(_ *testing.T, room string) []string {
	var out []string
	for _, m := range p.emu.UserMessages(room) {
		out = append(out, m.Text)
	}
	return out
}
