package conntest

import (
	"context"
	"maps"
	"strings"
	"sync"

	"github.com/bridgeworks/bridge/connector"
)

// MemState is an in-memory connector.StateStore with the store's
// revision rules, for tests that run a connector without the bridge.
type MemState struct {
	mu   sync.Mutex
	rev  uint64
	vals map[string][]byte
	revs map[string]uint64
}

// NewMemState returns an empty store.
func NewMemState() *MemState {
	return &MemState{vals: map[string][]byte{}, revs: map[string]uint64{}}
}

// Values returns a copy of every key and value.
func (m *MemState) Values() map[string][]byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.vals)
}

// Get implements connector.StateStore.
func (m *MemState) Get(_ context.Context, key string) ([]byte, uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.vals[key]
	if !ok {
		return nil, 0, connector.ErrStateNotFound
	}
	return append([]byte(nil), v...), m.revs[key], nil
}

// Create implements connector.StateStore.
func (m *MemState) Create(ctx context.Context, key string, value []byte) (uint64, error) {
	m.mu.Lock()
	_, ok := m.vals[key]
	m.mu.Unlock()
	if ok {
		return 0, connector.ErrStateConflict
	}
	return m.Put(ctx, key, value)
}

// Update implements connector.StateStore.
func (m *MemState) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	m.mu.Lock()
	cur := m.revs[key]
	m.mu.Unlock()
	if cur != rev {
		return 0, connector.ErrStateConflict
	}
	return m.Put(ctx, key, value)
}

// Put implements connector.StateStore.
func (m *MemState) Put(_ context.Context, key string, value []byte) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rev++
	m.vals[key] = append([]byte(nil), value...)
	m.revs[key] = m.rev
	return m.rev, nil
}

// Delete implements connector.StateStore.
func (m *MemState) Delete(_ context.Context, key string, rev uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if rev != 0 && m.revs[key] != rev {
		return connector.ErrStateConflict
	}
	delete(m.vals, key)
	delete(m.revs, key)
	return nil
}

// List implements connector.StateStore.
func (m *MemState) List(_ context.Context, prefix string) ([]string, error) {
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
