package polyai_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/connector/conntest"
	"github.com/bridgeworks/bridge/emulator/polyaiemu"
)

// TestCommandBeforeConnect: a restarted bridge executes commands as soon
// as it runs, maybe before the connector read its sessions from the
// state store; a command for a stored session then waits (is retried),
// it is not refused as an unknown session.
func TestCommandBeforeConnect(t *testing.T) {
	t.Parallel()
	emu, url := startEmu(t, polyaiemu.Options{NoAutoReply: true})
	st := conntest.NewMemState()
	s, err := emu.CreateSession(polyaiemu.SessionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	hold(t, st, s)
	c := newConnector(t, emu, url, st)
	_, err = c.Execute(context.Background(), connector.Command{ID: "early", Name: "send_message", Room: s.ID, Args: json.RawMessage(`{"text":"hi"}`)})
	if !errors.Is(err, connector.ErrNotConnected) {
		t.Fatalf("send_message before Connect: %v, want ErrNotConnected (retried)", err)
	}
	if err := c.Connect(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	drain(t, c)
	_, err = c.Execute(context.Background(), connector.Command{ID: "unknown", Name: "send_message", Room: "no-such-session", Args: json.RawMessage(`{"text":"hi"}`)})
	var pe *connector.PlatformError
	if !errors.As(err, &pe) || pe.Code != "session_not_found" {
		t.Errorf("send_message for an unknown session once connected: %v, want session_not_found", err)
	}
}
