package polyai_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/connector/conntest"
	"github.com/bridgeworks/bridge/connector/polyai"
	"github.com/bridgeworks/bridge/emulator/polyaiemu"
	"github.com/bridgeworks/bridge/internal/testutil"
	"github.com/bridgeworks/bridge/retry"
)

// records returns the session records kept, by session id.
func records(t *testing.T, m *conntest.MemState) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	for k, v := range m.Values() {
		if !strings.HasPrefix(k, "session") {
			continue // the alive stamp
		}
		var r map[string]any
		if err := json.Unmarshal(v, &r); err != nil {
			t.Fatalf("state record %q: %v", v, err)
		}
		out[r["id"].(string)] = r
	}
	return out
}

// hold puts a session the emulator created into st, as a bridge that
// created it would have left it.
func hold(t testing.TB, st connector.StateStore, s polyaiemu.SessionInfo) {
	t.Helper()
	b, _ := json.Marshal(map[string]any{"id": s.ID, "token": s.Token, "auto_join": true, "streaming": s.Streaming})
	if _, err := st.Put(context.Background(), "session."+s.ID, b); err != nil {
		t.Fatal(err)
	}
}

// startEmu starts an emulator stopped at t's cleanup.
func startEmu(t *testing.T, o polyaiemu.Options) (*polyaiemu.Server, string) {
	t.Helper()
	emu := polyaiemu.New(o)
	url, err := emu.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emu.Close)
	return emu, url
}

// testSettings are the fast timings of the connector's tests.
var testSettings = connector.Settings{"echo_timeout": "200ms", "state_flush": "20ms", "stream_timeout": "2s"}

// newConnector builds a connector for emu with state st.
func newConnector(t *testing.T, emu *polyaiemu.Server, url string, st connector.StateStore) *polyai.Connector {
	t.Helper()
	cfg := polyai.ConfigFor(url, emu.Host(), emu.ConnectorToken(), testSettings)
	cfg.Reconnect = retry.Policy{Initial: 5 * time.Millisecond, Max: 50 * time.Millisecond}
	c, err := polyai.New(cfg, connector.Deps{Log: testutil.Logger(t), State: st})
	if err != nil {
		t.Fatal(err)
	}
	return c
}
