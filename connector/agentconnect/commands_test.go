package agentconnect_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/emulator/agentconnectemu"
)

// TestRoutesNotServed: the agents routes and providers, which the
// emulator (like some servers) does not serve, fail with a clear,
// permanent not_served error naming the route.
func TestRoutesNotServed(t *testing.T) {
	t.Parallel()
	emu, url := fastEmu(t, agentconnectemu.Options{})
	c := newConn(t, emu, url, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, cmd := range []connector.Command{
		{Name: "providers"},
		{Name: "agents"},
		{Name: "agent_status", Room: "session_1"},
		{Name: "agent_message", Args: json.RawMessage(`{"agent_id":"ai1_x","receiver_id":"human_x","content":"hi"}`)},
	} {
		_, err := c.Execute(ctx, cmd)
		var pe *connector.PlatformError
		if !errors.As(err, &pe) || pe.Status != 404 || pe.Code != "not_served" || !strings.Contains(pe.Message, "/api/") || !connector.IsPermanent(err) {
			t.Errorf("%s: %v, want a permanent 404 not_served naming the route", cmd.Name, err)
		}
	}
	if _, err := c.Execute(ctx, connector.Command{Name: "agent_message", Args: json.RawMessage(`{"agent_id":"a"}`)}); err == nil || !strings.Contains(err.Error(), "receiver_id") {
		t.Errorf("agent_message without receiver_id: %v", err)
	}
}
