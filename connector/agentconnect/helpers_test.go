package agentconnect_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/connector/agentconnect"
	"github.com/bridgeworks/bridge/emulator/agentconnectemu"
	"github.com/bridgeworks/bridge/internal/testutil"
	"github.com/bridgeworks/bridge/retry"
)

// fastEmu starts an emulator with test timings: pings every 100ms, the
// AI's slow notice after 300ms, no rate limits, no session cap, no token
// budget or turn limit unless opts says otherwise.
func fastEmu(t *testing.T, opts agentconnectemu.Options) (*agentconnectemu.Server, string) {
	t.Helper()
	if opts.PingInterval == 0 {
		opts.PingInterval = 100 * time.Millisecond
	}
	if opts.ReplyTimeout == 0 {
		opts.ReplyTimeout = 300 * time.Millisecond
	}
	if opts.MaxSessionsPerUser == 0 {
		opts.MaxSessionsPerUser = -1
	}
	if opts.TokenBudget == 0 {
		opts.TokenBudget = -1
	}
	if opts.MaxTurns == 0 {
		opts.MaxTurns = -1
	}
	if opts.RateLimits == nil {
		opts.NoRateLimits = true
	}
	emu := agentconnectemu.New(opts)
	url, err := emu.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emu.Close)
	return emu, url
}

// testSettings are the connector's settings for a fast emulator.
func testSettings(url string) connector.Settings {
	return connector.Settings{"base_url": url, "ping_timeout": "1s", "reply_timeout": "2s", "open_wait": "5s"}
}

// newConn builds a connector for the emulator at url (no I/O).
func newConn(t *testing.T, emu *agentconnectemu.Server, url string, state connector.StateStore) *agentconnect.Connector {
	t.Helper()
	cfg := agentconnect.ConfigFor(url, agentconnectemu.DefaultUser, emu.Password())
	cfg.Settings = testSettings(url)
	cfg.Reconnect = retry.Policy{Initial: 5 * time.Millisecond, Max: 50 * time.Millisecond}
	c, err := agentconnect.New(cfg, connector.Deps{Log: testutil.Logger(t), State: state})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// createSession runs create_session on c and returns the session id.
func createSession(t *testing.T, c *agentconnect.Connector, typ string, metadata any) string {
	t.Helper()
	req := map[string]any{"session_type": typ, "agents": map[string]any{"a": map[string]string{"provider": "groq"}}}
	if typ == "agent_agent" {
		req["agents"] = map[string]any{"a": map[string]string{"provider": "groq"}, "b": map[string]string{"provider": "openai"}}
	}
	if metadata != nil {
		req["metadata"] = metadata
	}
	args, _ := json.Marshal(req)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.Execute(ctx, connector.Command{ID: "create", Name: "create_session", Args: args})
	if err != nil {
		t.Fatalf("create_session: %v", err)
	}
	if resp.Ref == "" {
		t.Fatalf("create_session answered no session id: %s", resp.Data)
	}
	return resp.Ref
}
