package toyplat_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/connector/conntest"
	"github.com/bridgeworks/bridge/connector/conntest/toyplat"
	"github.com/bridgeworks/bridge/connector/conntest/toyplat/toyemu"
	"github.com/bridgeworks/bridge/internal/testutil"
)

// TestConformance runs the connector conformance suite against the toy
// emulator.
func TestConformance(t *testing.T) {
	conntest.Run(t, conntest.Harness{New: newToyPlatform})
}

// toyPlatform drives toyemu for the suite: three conversations, human posts
// as the produced events.
type toyPlatform struct {
	emu   *toyemu.Server
	convs []toyemu.Conversation
	next  int
}

func newToyPlatform(t *testing.T) (connector.Connector, conntest.Platform) {
	emu := toyemu.New(toyemu.Options{})
	url, err := emu.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emu.Close)
	p := &toyPlatform{emu: emu}
	for i := range 3 {
		p.convs = append(p.convs, emu.AddConversation(fmt.Sprintf("conntest %d", i)))
	}
	return newToyConnector(t, url, emu.Token()), p
}

// newToyConnector builds a toy connector for url with token.
func newToyConnector(t *testing.T, url, token string) connector.Connector {
	c, err := toyplat.Factory().New(connector.Config{Name: "conntest", Platform: toyplat.Platform,
		Settings: connector.Settings{"base_url": url}, Secrets: connector.NewSecrets(map[string]connector.SecretRef{"token": {Value: token}}, nil)},
		connector.Deps{Log: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (p *toyPlatform) Produce(t *testing.T, n int) []conntest.Produced {
	out := make([]conntest.Produced, 0, n)
	for range n {
		c := p.convs[p.next%len(p.convs)]
		p.next++
		post := p.emu.Post(c.ID, "ada", fmt.Sprintf("conntest post %d", p.next))
		if post.ID == "" {
			t.Fatalf("toyemu did not post in %s", c.ID)
		}
		out = append(out, conntest.Produced{Room: c.ID, Key: post.ID})
	}
	return out
}

func (p *toyPlatform) Drop(*testing.T)        { p.emu.DropStreams() }
func (p *toyPlatform) Malformed(*testing.T)   { p.emu.SendGarbage() }
func (p *toyPlatform) Room(*testing.T) string { return p.convs[0].ID }

func (p *toyPlatform) Command(room, marker string) connector.Command {
	args, _ := json.Marshal(map[string]string{"text": marker})
	return connector.Command{ID: marker, Name: "post", Room: room, Args: args}
}

func (p *toyPlatform) BadCommand(room string) connector.Command {
	return connector.Command{ID: "bad", Name: "post", Room: room, Args: json.RawMessage(`{"text":"  "}`)}
}

func (p *toyPlatform) Fail(t *testing.T, _ string, f conntest.Fault) {
	switch f {
	case conntest.FaultRefuse:
		p.emu.FailNext(http.StatusForbidden, 0)
	case conntest.FaultRateLimit:
		p.emu.FailNext(http.StatusTooManyRequests, time.Second)
	case conntest.FaultUnavailable:
		p.emu.FailNext(http.StatusBadGateway, 0)
	case conntest.FaultTransport:
		p.emu.HangUpNext()
	default:
		t.Fatalf("fault %s not supported", f)
	}
}

func (p *toyPlatform) Received(_ *testing.T, room string) []string {
	var out []string
	for _, post := range p.emu.BotPosts(room) {
		out = append(out, post.Text)
	}
	return out
}

// ProcessingState reads the last progress stage of a post.
func (p *toyPlatform) ProcessingState(_ *testing.T, _, id string) (connector.ProcessingState, bool) {
	stages := p.emu.Progress(id)
	if len(stages) == 0 {
		return 0, false
	}
	i := slices.Index([]string{toyemu.StageSeen, toyemu.StageDone, toyemu.StageDropped}, stages[len(stages)-1])
	return []connector.ProcessingState{connector.Processing, connector.Processed, connector.Failed}[i], i >= 0
}
