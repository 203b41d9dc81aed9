package polyai_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/connector/polyai"
	"github.com/bridgeworks/bridge/emulator/polyaiemu"
	"github.com/bridgeworks/bridge/internal/testutil"
	"github.com/bridgeworks/bridge/retry"
)

// memState is an in-memory connector.StateStore for tests that run a
// connector without the bridge.
type memState struct {
	mu   sync.Mutex
	rev  uint64
	vals map[string][]byte
	revs map[string]uint64
}

func newMemState() *memState {
	return &memState{vals: map[string][]byte{}, revs: map[string]uint64{}}
}

func (m *memState) Get(_ context.Context, key string) ([]byte, uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.vals[key]
	if !ok {
		return nil, 0, connector.ErrStateNotFound
	}
	return append([]byte(nil), v...), m.revs[key], nil
}

func (m *memState) Create(ctx context.Context, key string, value []byte) (uint64, error) {
	m.mu.Lock()
	_, ok := m.vals[key]
	m.mu.Unlock()
	if ok {
		return 0, connector.ErrStateConflict
	}
	return m.Put(ctx, key, value)
}

func (m *memState) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	m.mu.Lock()
	cur := m.revs[key]
	m.mu.Unlock()
	if cur != rev {
		return 0, connector.ErrStateConflict
	}
	return m.Put(ctx, key, value)
}

func (m *memState) Put(_ context.Context, key string, value []byte) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rev++
	m.vals[key] = append([]byte(nil), value...)
	m.revs[key] = m.rev
	return m.rev, nil
}

func (m *memState) Delete(_ context.Context, key string, rev uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if rev != 0 && m.revs[key] != rev {
		return connector.ErrStateConflict
	}
	delete(m.vals, key)
	delete(m.revs, key)
	return nil
}

func (m *memState) List(_ context.Context, prefix string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for k := range m.vals {
		if strings.HasPrefix(k, prefix) {
			out = append(out, k)
		}
	}
	return out, nil
}

// records returns the session records kept, by session id.
func (m *memState) records(t *testing.T) map[string]map[string]any {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]map[string]any{}
	for _, v := range m.vals {
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
