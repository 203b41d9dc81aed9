package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bridgeworks/bridge/ackflow"
	"github.com/bridgeworks/bridge/claimcheck"
	"github.com/bridgeworks/bridge/internal/testutil"
	"github.com/bridgeworks/bridge/natsbus"
	"github.com/bridgeworks/bridge/subjects"
)

// TestDLQListShowRedrive: an operator lists the dead letters, looks at one
// and redrives it: it is stored again on its source subject with a new id,
// leaves the DLQ, and cannot be redriven twice.
func TestDLQListShowRedrive(t *testing.T) {
	t.Parallel()
	ns := testutil.NATS(t)
	ctx := testutil.Context(t, 30*time.Second)
	if err := natsbus.EnsureStreams(ctx, ns.JS, natsbus.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	src := subjects.Subject{Prefix: "bridge", Kind: subjects.KindCommand, Platform: "band", Conn: "support-bot", Room: "room-1", Name: "send_message"}
	other := src
	other.Conn = "other-bot"
	hdr := nats.Header{}
	hdr.Set(subjects.HeaderMsgID, "cmd-1")
	if err := ackflow.DeadLetter(ctx, ns.JS, nil, "bridge", src, []byte(`{"content":"hi"}`), hdr, "platform: 500", 500, 8); err != nil {
		t.Fatal(err)
	}
	if err := ackflow.DeadLetter(ctx, ns.JS, nil, "bridge", other, []byte(`{"content":"other"}`), nil, "bad request: x", 400, 1); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "bridge.toml")
	if err := os.WriteFile(cfg, []byte("[nats]\nurl = \""+ns.URL+"\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dlq := func(args ...string) (string, int) {
		var out, errOut bytes.Buffer
		code := run(ctx, append([]string{"dlq"}, append(args, "--config", cfg)...), &out, &errOut)
		return out.String() + errOut.String(), code
	}

	out, code := dlq("list", "--conn", "support-bot")
	if code != 0 || !strings.Contains(out, src.String()) || strings.Contains(out, "other-bot") || !strings.Contains(out, "1 dead letters shown") {
		t.Fatalf("list --conn: exit %d\n%s", code, out)
	}
	if out, code = dlq("list"); code != 0 || !strings.Contains(out, "2 dead letters shown") {
		t.Fatalf("list: exit %d\n%s", code, out)
	}
	if out, code = dlq("show", "1"); code != 0 || !strings.Contains(out, "platform: 500") || !strings.Contains(out, `{"content":"hi"}`) {
		t.Fatalf("show: exit %d\n%s", code, out)
	}

	sub, err := ns.NC.SubscribeSync(src.String())
	if err != nil {
		t.Fatal(err)
	}
	if out, code = dlq("redrive", "1"); code != 0 || !strings.Contains(out, "redriven to "+src.String()) {
		t.Fatalf("redrive: exit %d\n%s", code, out)
	}
	m, err := sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatalf("redriven command not published: %v", err)
	}
	if string(m.Data) != `{"content":"hi"}` || m.Header.Get(subjects.HeaderMsgID) == "cmd-1" || m.Header.Get(subjects.HeaderError) != "" {
		t.Fatalf("redriven message: %q headers %v", m.Data, m.Header)
	}
	st, err := ns.JS.Stream(ctx, "BRIDGE_COMMANDS")
	if err != nil {
		t.Fatal(err)
	}
	if n := st.CachedInfo().State.Msgs; n != 1 {
		t.Fatalf("commands stream holds %d messages, want the redriven one", n)
	}
	if out, code = dlq("redrive", "1"); code == 0 || !strings.Contains(out, "no dead letter with sequence 1") {
		t.Fatalf("second redrive: exit %d\n%s", code, out)
	}
	if out, code = dlq("list"); code != 0 || !strings.Contains(out, "1 dead letters shown") {
		t.Fatalf("list after redrive: exit %d\n%s", code, out)
	}
	if out, code = dlq("redrive", "x"); code != 2 || !strings.Contains(out, strconv.Quote("x")) {
		t.Fatalf("bad sequence: exit %d\n%s", code, out)
	}
}

// TestDLQRedriveByReference: a dead letter whose body went to the object
// store (too large for the dead letter with its headers) is redriven with
// its body fetched back.
func TestDLQRedriveByReference(t *testing.T) {
	t.Parallel()
	ns := testutil.NATSWith(t, natsbus.EmbeddedOptions{MaxPayload: 16 << 10})
	ctx := testutil.Context(t, 30*time.Second)
	if err := natsbus.EnsureStreams(ctx, ns.JS, natsbus.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	src := subjects.Subject{Prefix: "bridge", Kind: subjects.KindCommand, Platform: "band", Conn: "support-bot", Room: "room-1", Name: "send_message"}
	body := []byte(`{"content":"` + strings.Repeat("x", 16<<10-100) + `"}`) // fits alone, not with the dead letter's headers
	cc := claimcheck.New(claimcheck.Options{JS: ns.JS, Conn: "support-bot"})
	if err := ackflow.DeadLetter(ctx, ns.JS, cc, "bridge", src, body, nil, "platform: 500 "+strings.Repeat("r", 500), 500, 8); err != nil {
		t.Fatal(err)
	}
	st, err := ns.JS.Stream(ctx, "BRIDGE_DLQ")
	if err != nil {
		t.Fatal(err)
	}
	if dl, err := st.GetMsg(ctx, 1); err != nil || dl.Header.Get(subjects.HeaderDataRef) == "" || len(dl.Data) != 0 {
		t.Fatalf("the dead letter should carry its body by reference: %v", err)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "bridge.toml")
	if err := os.WriteFile(cfg, []byte("[nats]\nurl = \""+ns.URL+"\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sub, err := ns.NC.SubscribeSync(src.String())
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if code := run(ctx, []string{"dlq", "redrive", "1", "--config", cfg}, &out, &errOut); code != 0 {
		t.Fatalf("redrive: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	m, err := sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatalf("redriven command not published: %v", err)
	}
	if !bytes.Equal(m.Data, body) || m.Header.Get(subjects.HeaderDataRef) != "" {
		t.Fatalf("redriven body: %d bytes (want %d), data-ref header %q", len(m.Data), len(body), m.Header.Get(subjects.HeaderDataRef))
	}
}
