package agentconnect_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/connector/conntest"
	"github.com/bridgeworks/bridge/emulator/agentconnectemu"
)

// TestCreateSessionOncePerCommand: a create_session that a crashed run may
// have executed (redelivered with MaybeExecuted) never creates a second
// session: it answers with the session the first run created, or with an
// unknown outcome when that run was cut off before the platform answered;
// the command's record goes when its session ends.
func TestCreateSessionOncePerCommand(t *testing.T) {
	t.Parallel()
	emu, url := fastEmu(t, agentconnectemu.Options{})
	st := conntest.NewMemState()
	c := newConn(t, emu, url, st)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	args := json.RawMessage(`{"session_type":"human_agent","agents":{"a":{"provider":"groq"}}}`)
	create := func(id string, maybe bool) (connector.Response, error) {
		return c.Execute(ctx, connector.Command{ID: id, Name: "create_session", Args: args, MaybeExecuted: maybe})
	}

	first, err := create("cmd-1", false)
	if err != nil || first.Ref == "" {
		t.Fatalf("create_session: %v %s", err, first.Data)
	}
	again, err := create("cmd-1", true) // the same command, redelivered after a crash
	if err != nil || again.Ref != first.Ref {
		t.Fatalf("rerun: %v, session %q; want the first run's %q", err, again.Ref, first.Ref)
	}
	if n := len(emu.Sessions()); n != 1 {
		t.Fatalf("%d sessions on the platform after a rerun, want 1", n)
	}

	// A run cut off after recording the attempt and before the answer.
	var pendingKey string // cmd-1's record
	for k, v := range st.Values() {
		if strings.HasPrefix(k, "creating/") && string(v) == first.Ref {
			pendingKey = k
		}
	}
	if pendingKey == "" {
		t.Fatalf("no create record naming %s in %v", first.Ref, st.Values())
	}
	if _, err := create("cmd-2", false); err != nil {
		t.Fatal(err)
	}
	for k := range st.Values() {
		if strings.HasPrefix(k, "creating/") && k != pendingKey {
			if _, err := st.Put(ctx, k, []byte("pending")); err != nil { // as if cut off
				t.Fatal(err)
			}
		}
	}
	sessions := len(emu.Sessions())
	_, err = create("cmd-2", true)
	if !connector.WasSent(err) {
		t.Fatalf("rerun of a cut-off create: %v, want an unknown outcome (Sent)", err)
	}
	if n := len(emu.Sessions()); n != sessions {
		t.Fatalf("a cut-off create's rerun made a session: %d → %d", sessions, n)
	}

	// Ending the session drops its command's record.
	if _, err := c.Execute(ctx, connector.Command{ID: "end-1", Name: "end_session", Room: first.Ref, Args: json.RawMessage(`{}`)}); err != nil {
		t.Fatalf("end_session: %v", err)
	}
	if _, ok := st.Values()[pendingKey]; ok {
		t.Fatalf("the create record of an ended session is still kept")
	}
}
