package testutil

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Markers around the nats-server config block of docs/security.md.
const (
	docPermsBegin = "<!-- nats-permissions:begin"
	docPermsEnd   = "<!-- nats-permissions:end -->"
)

// DocumentedNATSConfig returns the nats-server config block between the
// nats-permissions markers of the Markdown file docFile, verbatim, without
// its code fence.
func DocumentedNATSConfig(t testing.TB, docFile string) string {
	t.Helper()
	b, err := os.ReadFile(docFile)
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), docPermsBegin)
	if !ok {
		t.Fatalf("%s has no %q marker", docFile, docPermsBegin)
	}
	block, _, ok := strings.Cut(rest, docPermsEnd)
	if !ok {
		t.Fatalf("%s has no %q marker", docFile, docPermsEnd)
	}
	_, block, _ = strings.Cut(block, "```\n") // after the marker line's end and the fence
	block, _, ok = strings.Cut(block, "```")
	if !ok {
		t.Fatalf("the permissions block in %s is not fenced", docFile)
	}
	return block
}

// DocumentedNATS runs nats-server with exactly the config block of docFile
// (see [DocumentedNATSConfig]): the test only defines the variables the
// block refers to (vars, such as the passwords) and moves the listener to a
// random loopback port and the store to t.TempDir(). It stops at cleanup.
func DocumentedNATS(t testing.TB, docFile string, vars map[string]string) *server.Server {
	t.Helper()
	var conf strings.Builder
	for k, v := range vars {
		conf.WriteString(k + ": \"" + v + "\"\n")
	}
	conf.WriteString(DocumentedNATSConfig(t, docFile))
	file := filepath.Join(t.TempDir(), "nats-server.conf")
	if err := os.WriteFile(file, []byte(conf.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	o, err := server.ProcessConfigFile(file)
	if err != nil {
		t.Fatalf("the documented config does not load: %v", err)
	}
	o.ServerName = "documented"
	o.Host, o.Port = "127.0.0.1", -1
	o.JetStream, o.StoreDir = true, t.TempDir()
	o.NoSigs, o.NoLog = true, true
	srv, err := server.NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start() // owned by srv: stopped at cleanup
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server with the documented config not ready")
	}
	return srv
}
