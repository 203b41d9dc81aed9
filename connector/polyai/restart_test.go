package polyai_test

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"testing"
	"time"

	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/connector/conntest"
	"github.com/bridgeworks/bridge/emulator/polyaiemu"
	"github.com/bridgeworks/bridge/internal/testutil"
	"github.com/bridgeworks/bridge/subjects"
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
	// A new session before Connect: not created (Connect would take it for
	// one ended elsewhere and drop it), retried once connected.
	before := len(emu.Sessions())
	_, err = c.Execute(context.Background(), connector.Command{ID: "early-create", Name: "create_session", Args: json.RawMessage(`{}`)})
	if !errors.Is(err, connector.ErrNotConnected) {
		t.Fatalf("create_session before Connect: %v, want ErrNotConnected (retried)", err)
	}
	if n := len(emu.Sessions()); n != before {
		t.Fatalf("create_session before Connect created a session on the platform (%d, was %d)", n, before)
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

// holdSince puts a session the emulator created into st as a bridge
// would have left it, with the record fields given (created, seen, open).
func holdSince(t *testing.T, st connector.StateStore, s polyaiemu.SessionInfo, fields map[string]any) {
	t.Helper()
	rec := map[string]any{"id": s.ID, "token": s.Token, "auto_join": true}
	maps.Copy(rec, fields)
	b, _ := json.Marshal(rec)
	if _, err := st.Put(context.Background(), "session."+s.ID, b); err != nil {
		t.Fatal(err)
	}
}

// restartOn runs a new connector on st and waits until the session id is
// either reported ended or replaced; it returns which, and checks that
// the record is gone.
func restartOn(t *testing.T, emu *polyaiemu.Server, url string, st *conntest.MemState, id string) subjects.Lifecycle {
	t.Helper()
	c := newConnector(t, emu, url, st)
	if err := c.Connect(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	got := drain(t, c)
	var lc subjects.Lifecycle
	testutil.Eventually(t, 10*time.Second, func() bool {
		for _, l := range []subjects.Lifecycle{subjects.LifecycleSessionEnded, subjects.LifecycleSessionReplaced} {
			if got.has(id, "", l) {
				lc = l
				return true
			}
		}
		return false
	}, "session %s ended or replaced", id)
	testutil.Eventually(t, 10*time.Second, func() bool { _, kept := records(t, st)[id]; return !kept }, "record of %s removed", id)
	return lc
}

// TestRestartAfterPlatformEnded: a long-lived session (created well over
// PolyAI's idle lifetime ago) the platform ends while the bridge is down
// is reported ended and forgotten after the restart, not replaced: its
// socket was open shortly before, whether the bridge stopped (the record
// keeps the last frame read) or was killed (the record, written while
// the socket was open, says so, and the alive stamp says until when).
func TestRestartAfterPlatformEnded(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"stopped", "killed"} {
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			emu, url := startEmu(t, polyaiemu.Options{NoAutoReply: true})
			st := conntest.NewMemState()
			s, err := emu.CreateSession(polyaiemu.SessionOptions{})
			if err != nil {
				t.Fatal(err)
			}
			holdSince(t, st, s, map[string]any{"created": time.Now().Add(-time.Hour)})
			c := newConnector(t, emu, url, st)
			if err := c.Connect(context.Background()); err != nil {
				t.Fatal(err)
			}
			drain(t, c)
			testutil.Eventually(t, 10*time.Second, func() bool { return heldSessions(t, c)[s.ID] }, "socket open")
			after := st
			if how == "killed" { // the store as the process left it
				testutil.Eventually(t, 10*time.Second, func() bool {
					_, stamped := st.Values()["alive"]
					return records(t, st)[s.ID]["open"] == true && stamped
				}, "recorded open, alive stamp written")
				after = conntest.NewMemState()
				for k, v := range st.Values() {
					if _, err := after.Put(context.Background(), k, v); err != nil {
						t.Fatal(err)
					}
				}
			}
			if err := c.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			if !emu.EndSession(s.ID, polyaiemu.ReasonNaturalEnd) {
				t.Fatal("emulator: session not ended")
			}
			if lc := restartOn(t, emu, url, after, s.ID); lc != subjects.LifecycleSessionEnded {
				t.Errorf("after the restart the ended session got %s, want session_ended", lc)
			}
			if n := len(emu.Sessions()); n != 1 {
				t.Errorf("%d sessions on the platform, want 1 (no replacement)", n)
			}
		})
	}
}

// TestRestartLastSignOfLife: what decides between ended and replaced for
// a stored session meeting 404 is its last sign of life: the record's
// seen time, or the alive stamp when the record says its socket was open.
func TestRestartLastSignOfLife(t *testing.T) {
	t.Parallel()
	old := time.Now().Add(-time.Hour)
	for _, tc := range []struct {
		name  string
		open  bool
		alive time.Time // zero: no stamp
		want  subjects.Lifecycle
	}{
		{"open until a recent stamp", true, time.Now().Add(-time.Minute), subjects.LifecycleSessionEnded},
		{"open, the stamp old too", true, old, subjects.LifecycleSessionReplaced},
		{"open, no stamp", true, time.Time{}, subjects.LifecycleSessionReplaced},
		{"closed long ago, a recent stamp", false, time.Now().Add(-time.Minute), subjects.LifecycleSessionReplaced},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			emu, url := startEmu(t, polyaiemu.Options{NoAutoReply: true})
			st := conntest.NewMemState()
			s, err := emu.CreateSession(polyaiemu.SessionOptions{})
			if err != nil {
				t.Fatal(err)
			}
			holdSince(t, st, s, map[string]any{"created": old, "seen": old, "open": tc.open})
			if !tc.alive.IsZero() {
				b, _ := json.Marshal(map[string]any{"at": tc.alive})
				if _, err := st.Put(context.Background(), "alive", b); err != nil {
					t.Fatal(err)
				}
			}
			emu.EndSession(s.ID, polyaiemu.ReasonNaturalEnd)
			if lc := restartOn(t, emu, url, st, s.ID); lc != tc.want {
				t.Errorf("got %s, want %s", lc, tc.want)
			}
		})
	}
}
