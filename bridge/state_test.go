package bridge

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/internal/testutil"
)

// stateBucket is the state bucket on a NATS server of the test's own.
func stateBucket(t *testing.T) (context.Context, jetstream.KeyValue) {
	t.Helper()
	ns := testutil.NATS(t)
	ctx := testutil.Context(t, 30*time.Second)
	kv, err := openStateBucket(ctx, ns.JS, "bridge", 1)
	if err != nil {
		t.Fatal(err)
	}
	return ctx, kv
}

// The state store on a real JetStream KV bucket: each connection sees only
// its own keys, revisions detect a concurrent change, and bad keys are
// refused with a clear error.
func TestStateStore(t *testing.T) {
	t.Parallel()
	ctx, kv := stateBucket(t)
	a, b := newStateStore(kv, "conn-a", nil), newStateStore(kv, "conn-b", nil)

	rev, err := a.Create(ctx, "token", []byte("t1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Create(ctx, "token", []byte("t2")); !errors.Is(err, connector.ErrStateConflict) {
		t.Errorf("Create of an existing key: %v, want ErrStateConflict", err)
	}
	// Another connection does not see it, and may use the same key.
	if _, _, err := b.Get(ctx, "token"); !errors.Is(err, connector.ErrStateNotFound) {
		t.Errorf("conn-b sees conn-a's key: %v", err)
	}
	if _, err := b.Create(ctx, "token", []byte("b1")); err != nil {
		t.Errorf("conn-b's own key: %v", err)
	}
	v, got, err := a.Get(ctx, "token")
	if err != nil || string(v) != "t1" || got != rev {
		t.Fatalf("Get: %q rev %d %v, want t1 rev %d", v, got, err, rev)
	}

	// Update with the current revision wins; with a stale one it conflicts.
	rev2, err := a.Update(ctx, "token", []byte("t2"), rev)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Update(ctx, "token", []byte("t3"), rev); !errors.Is(err, connector.ErrStateConflict) {
		t.Errorf("Update with a stale revision: %v, want ErrStateConflict", err)
	}
	if err := a.Delete(ctx, "token", rev); !errors.Is(err, connector.ErrStateConflict) {
		t.Errorf("Delete with a stale revision: %v, want ErrStateConflict", err)
	}
	if v, _, _ := a.Get(ctx, "token"); string(v) != "t2" {
		t.Errorf("value after a refused update: %q", v)
	}

	for _, k := range []string{"cursor.room-1", "cursor.room-2", "session"} {
		if _, err := a.Put(ctx, k, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	keys, err := a.List(ctx, "cursor.")
	slices.Sort(keys)
	if err != nil || !slices.Equal(keys, []string{"cursor.room-1", "cursor.room-2"}) {
		t.Errorf("List(cursor.) = %v, %v", keys, err)
	}
	keys, err = b.List(ctx, "")
	if err != nil || !slices.Equal(keys, []string{"token"}) {
		t.Errorf("conn-b lists %v, %v: only its own key", keys, err)
	}

	if err := a.Delete(ctx, "token", rev2); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.Get(ctx, "token"); !errors.Is(err, connector.ErrStateNotFound) {
		t.Errorf("Get after Delete: %v", err)
	}
	if err := a.Delete(ctx, "session", 0); err != nil {
		t.Errorf("unconditional Delete: %v", err)
	}

	for key, want := range map[string]string{"": "empty", "a b": `has ' '`, "a..b": "empty dot-separated part", ".a": "empty dot-separated part", "a>": `has '>'`, "a*": `has '*'`} {
		if _, err := a.Put(ctx, key, []byte("x")); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Put(%q): %v, want mention of %q", key, err, want)
		}
	}
}

// A running bridge gives each connector its state store (Deps.State), on
// the bucket BRIDGE_STATE under the connection's name; a write lands while
// the bridge holds the connection's lease.
func TestConnectorGetsStateStore(t *testing.T) {
	t.Parallel()
	sc := newScripted()
	states := make(chan connector.StateStore, 1)
	reg := connector.Registry{"fake": {Platform: "fake", New: func(_ connector.Config, deps connector.Deps) (connector.Connector, error) {
		states <- deps.State
		return sc, nil
	}}}
	h := runBridge(t, bridgeSpec{config: "[[connection]]\nname = \"c1\"\nplatform = \"fake\"\n", registry: reg})
	st := <-states
	if st == nil {
		t.Fatal("Deps.State is nil")
	}
	waitState(t, h, StateConnected) // writes are fenced: only the lease holder's land
	ctx := testutil.Context(t, 10*time.Second)
	if _, err := st.Put(ctx, "cursor", []byte("42")); err != nil {
		t.Fatal(err)
	}
	kv, err := h.js.KeyValue(ctx, StateBucket("bridge"))
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(ctx, "c1.cursor")
	if err != nil || string(e.Value()) != "42" {
		t.Fatalf("BRIDGE_STATE c1.cursor: %v", err)
	}
}

// A holder whose lease may have passed to another process writes no state:
// every write is refused with the fence's error, reads still work.
func TestStateWritesFenced(t *testing.T) {
	t.Parallel()
	ns := testutil.NATS(t)
	ctx := testutil.Context(t, 30*time.Second)
	kv, err := openStateBucket(ctx, ns.JS, "bridge", 1)
	if err != nil {
		t.Fatal(err)
	}
	ls, err := openLeases(ctx, ns.JS, ns.NC, "bridge", "me", time.Second, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer ls.close()
	l := ls.lease("conn-a")
	st := newStateStore(kv, "conn-a", l.fence)
	if !l.try(ctx, func(holder) {}) {
		t.Fatal("lease not taken")
	}
	rev, err := st.Create(ctx, "cursor", []byte("1"))
	if err != nil {
		t.Fatalf("write while holding the lease: %v", err)
	}
	l.stale() // the lease passed to another process
	writes := map[string]error{}
	_, writes["create"] = st.Create(ctx, "other", []byte("x"))
	_, writes["update"] = st.Update(ctx, "cursor", []byte("2"), rev)
	_, writes["put"] = st.Put(ctx, "cursor", []byte("3"))
	writes["delete"] = st.Delete(ctx, "cursor", 0)
	for op, err := range writes {
		if !errors.Is(err, errFenced) {
			t.Errorf("%s after the lease passed: %v, want errFenced", op, err)
		}
	}
	if v, _, err := st.Get(ctx, "cursor"); err != nil || string(v) != "1" {
		t.Errorf("state after fenced writes: %q %v, want the holder's last write", v, err)
	}
}

// A command cursor is found again only against the commands stream it
// was saved for: a stream made again starts its sequences over, and a
// cursor of the earlier one would skip its commands. A cursor the bridge
// cannot read is an error that names the key; a refused fence saves
// nothing.
func TestCommandCursorKeepsItsStream(t *testing.T) {
	t.Parallel()
	ctx, kv := stateBucket(t)
	log := testutil.Logger(t)
	made := time.Now()
	c := newCommandCursor(kv, "c1", made, nil, &log)
	if _, found, err := c.Load(ctx); found || err != nil {
		t.Fatalf("a cursor before any save: found %v, %v", found, err)
	}
	if err := c.Save(ctx, 42); err != nil {
		t.Fatal(err)
	}
	if seq, found, err := c.Load(ctx); seq != 42 || !found || err != nil {
		t.Fatalf("Load after Save(42): %d %v %v", seq, found, err)
	}
	again := newCommandCursor(kv, "c1", made.Add(time.Hour), nil, &log)
	if seq, found, err := again.Load(ctx); found || err != nil {
		t.Fatalf("the cursor of an earlier stream was found: %d %v %v", seq, found, err)
	}
	if _, err := kv.Put(ctx, "Commands.c1", []byte("garbage")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Load(ctx); err == nil || !strings.Contains(err.Error(), "Commands.c1") {
		t.Fatalf("an unreadable cursor: %v", err)
	}
	fenced := newCommandCursor(kv, "c1", made, func() error { return errors.New("lease lost") }, &log)
	if err := fenced.Save(ctx, 50); err == nil {
		t.Fatal("a fenced save went through")
	}
}
