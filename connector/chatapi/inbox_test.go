package chatapi_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/connector/chatapi"
	"github.com/bridgeworks/bridge/emulator/chatapiemu"
	"github.com/bridgeworks/bridge/internal/testutil"
	"github.com/bridgeworks/bridge/retry"
)

// memState is a connector.StateStore in memory, shared by the connectors
// of a test as the bridge's bucket is by its runs.
type memState struct {
	mu sync.Mutex
	m  map[string][]byte
	r  map[string]uint64
	n  uint64
}

func newMemState() *memState { return &memState{m: map[string][]byte{}, r: map[string]uint64{}} }

func (s *memState) Get(_ context.Context, k string) ([]byte, uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[k]
	if !ok {
		return nil, 0, connector.ErrStateNotFound
	}
	return append([]byte(nil), v...), s.r[k], nil
}

func (s *memState) set(k string, v []byte) uint64 {
	s.n++
	s.m[k], s.r[k] = append([]byte(nil), v...), s.n
	return s.n
}

func (s *memState) Create(_ context.Context, k string, v []byte) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[k]; ok {
		return 0, connector.ErrStateConflict
	}
	return s.set(k, v), nil
}

func (s *memState) Update(_ context.Context, k string, v []byte, rev uint64) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.r[k] != rev {
		return 0, connector.ErrStateConflict
	}
	return s.set(k, v), nil
}

func (s *memState) Put(_ context.Context, k string, v []byte) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.set(k, v), nil
}

func (s *memState) Delete(_ context.Context, k string, _ uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, k)
	return nil
}

func (s *memState) List(_ context.Context, prefix string) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for k := range s.m {
		if strings.HasPrefix(k, prefix) {
			out = append(out, k)
		}
	}
	return out, nil
}

func newStateConnector(t *testing.T, emu *chatapiemu.Server, agents []chatapiemu.Agent, st connector.StateStore) *chatapi.Connector {
	t.Helper()
	cfg := chatapi.ConfigFor(emu.BaseURL(), emu.APIKey(), testSettings(agents, nil))
	cfg.Reconnect = retry.Policy{Initial: 5 * time.Millisecond, Max: 50 * time.Millisecond}
	c, err := chatapi.New(cfg, connector.Deps{Log: testutil.Logger(t), State: st})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// nextItem receives until an inbox item arrives (lifecycle events skipped).
func nextItem(t *testing.T, c connector.Connector) (connector.Event, connector.AckFunc) {
	t.Helper()
	ctx := testutil.Context(t, 20*time.Second)
	for {
		ev, ack, err := c.Receive(ctx)
		if err != nil {
			t.Fatalf("Receive: %v", err)
		}
		if ev.Lifecycle == "" {
			return ev, ack
		}
		ack(ctx, nil)
	}
}

func inboxGets(emu *chatapiemu.Server, agent string) int {
	n := 0
	for _, r := range emu.Requests() {
		if r.Method == http.MethodGet && r.Path == "/api/agents/"+agent+"/inbox" && r.Status == http.StatusOK {
			n++
		}
	}
	return n
}

// An item is marked read only once its ack says it is stored; an item
// whose ack failed comes back and is not marked read.
func TestMarkReadOnlyAfterAck(t *testing.T) {
	t.Parallel()
	emu, agents := startEmu(t, 1, chatapiemu.Options{})
	a := agents[0]
	c := newConnector(t, emu, agents, nil)
	ctx := testutil.Context(t, 30*time.Second)
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	it, _ := emu.AddInboxItem(a.ID, chatapiemu.InboxItem{Content: "stand-up"})

	ev, ack := nextItem(t, c)
	if ev.Key != it.ID || ev.Room != a.ID || ev.Name != chatapi.EventInbox {
		t.Fatalf("got %s %s in %s, want %s %s in %s", ev.Name, ev.Key, ev.Room, chatapi.EventInbox, it.ID, a.ID)
	}
	// Several polls later, unacked: still unread, and not handed out again.
	polls := inboxGets(emu, a.ID)
	testutil.Eventually(t, 10*time.Second, func() bool { return inboxGets(emu, a.ID) >= polls+3 }, "three more polls")
	if emu.InboxItems(a.ID)[0].Read() || len(emu.MarkReadCalls()) != 0 {
		t.Fatal("the item was marked read before its ack")
	}
	ack(ctx, errors.New("not stored"))
	again, ack2 := nextItem(t, c)
	if again.Key != it.ID {
		t.Fatalf("after a failed ack got %s, want the same item %s again", again.Key, it.ID)
	}
	if emu.InboxItems(a.ID)[0].Read() {
		t.Fatal("an item whose ack failed was marked read")
	}
	ack2(ctx, nil)
	testutil.Eventually(t, 10*time.Second, func() bool { return emu.InboxItems(a.ID)[0].Read() }, "the item marked read after its ack")
	calls := emu.MarkReadCalls()
	if len(calls) != 1 || len(calls[0].Marked) != 1 || calls[0].Marked[0] != it.ID {
		t.Errorf("mark-read calls %+v, want one naming %s", calls, it.ID)
	}
}

// The inbox cursor in the state store: an item stored but not yet marked
// read when a connector stops is not handed out again by the next one
// (a restarted bridge), which marks it read.
func TestInboxCursorSurvivesRestart(t *testing.T) {
	t.Parallel()
	emu, agents := startEmu(t, 1, chatapiemu.Options{})
	a := agents[0]
	markPath := "/api/agents/" + a.ID + "/mark-read"
	emu.FailRoute(http.MethodPost, markPath, 1<<20, http.StatusServiceUnavailable, 0)
	st := newMemState()
	ctx := testutil.Context(t, 30*time.Second)

	c1 := newStateConnector(t, emu, agents, st)
	if err := c1.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	old, _ := emu.AddInboxItem(a.ID, chatapiemu.InboxItem{Content: "old"})
	ev, ack := nextItem(t, c1)
	if ev.Key != old.ID {
		t.Fatalf("got %s, want %s", ev.Key, old.ID)
	}
	ack(ctx, nil)
	testutil.Eventually(t, 10*time.Second, func() bool { return len(emu.Requests()) > 0 && failedMarks(emu, markPath) > 0 }, "a failed mark-read")
	if err := c1.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if emu.InboxItems(a.ID)[0].Read() {
		t.Fatal("marked read although every mark-read failed")
	}

	emu.ClearFaults()
	c2 := newStateConnector(t, emu, agents, st)
	if err := c2.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c2.Close(context.Background()) })
	fresh, _ := emu.AddInboxItem(a.ID, chatapiemu.InboxItem{Content: "new"})
	if ev, ack := nextItem(t, c2); ev.Key != fresh.ID {
		t.Errorf("the restarted connector handed out %s first, want only the new item %s (the old one was stored)", ev.Key, fresh.ID)
	} else {
		ack(ctx, nil)
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		its := emu.InboxItems(a.ID)
		return its[0].Read() && its[1].Read()
	}, "both items marked read")
}

func failedMarks(emu *chatapiemu.Server, path string) int {
	n := 0
	for _, r := range emu.Requests() {
		if r.Method == http.MethodPost && r.Path == path && r.Status == http.StatusServiceUnavailable {
			n++
		}
	}
	return n
}
