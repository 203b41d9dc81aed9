package natsbus_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/bridgeworks/bridge/internal/testutil"
	"github.com/bridgeworks/bridge/natsbus"
)

// startServer runs a nats-server with auth or TLS set in o (JetStream on,
// file store in t.TempDir(), random loopback port) until test cleanup.
func startServer(t *testing.T, o *server.Options) *server.Server {
	t.Helper()
	o.ServerName = "auth-test"
	o.Host, o.Port = "127.0.0.1", -1
	o.JetStream, o.StoreDir = true, t.TempDir()
	o.NoSigs, o.NoLog = true, true
	srv, err := server.NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	return srv
}

// connect runs natsbus.Connect with a short context and closes a
// successful connection at cleanup.
func connect(t *testing.T, o natsbus.Options) (*nats.Conn, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	o.ReconnectWait = 50 * time.Millisecond
	o.ConnectTimeout = 2 * time.Second
	nc, err := natsbus.Connect(ctx, o, testutil.Logger(t))
	if err == nil {
		t.Cleanup(nc.Close)
	}
	return nc, err
}

// mustConnect connects and proves the connection works with a round trip.
func mustConnect(t *testing.T, o natsbus.Options) *nats.Conn {
	t.Helper()
	nc, err := connect(t, o)
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	if err := nc.FlushTimeout(5 * time.Second); err != nil {
		t.Fatalf("flush: %v", err)
	}
	return nc
}

// wantRefused asserts Connect failed at once (a permanent error, not the
// context running out), with a message naming the problem and no secret.
func wantRefused(t *testing.T, o natsbus.Options, mention string, secrets ...string) {
	t.Helper()
	_, err := connect(t, o)
	if err == nil {
		t.Fatalf("Connect succeeded, want an error mentioning %q", mention)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Connect retried until its context ended instead of failing clearly: %v", err)
	}
	if !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(mention)) {
		t.Errorf("error %q does not mention %q", err, mention)
	}
	for _, s := range secrets {
		if s != "" && strings.Contains(err.Error(), s) {
			t.Errorf("error %q leaks a secret", err)
		}
	}
}

func TestConnectUserPassword(t *testing.T) {
	t.Parallel()
	const pw = "pw-7c1f0a9e-user-password"
	srv := startServer(t, &server.Options{Users: []*server.User{{Username: "bridge", Password: pw}}})
	url := srv.ClientURL()
	mustConnect(t, natsbus.Options{URL: url, User: "bridge", Password: pw})

	// JetStream works for the authenticated user.
	nc := mustConnect(t, natsbus.Options{URL: url, User: "bridge", Password: pw})
	js := jetStream(t, nc)
	if err := natsbus.EnsureStreams(testutil.Context(t, 10*time.Second), js, natsbus.StreamOptions{Prefix: "bridge"}); err != nil {
		t.Fatal(err)
	}

	// Credentials inside the URL work too; wrong ones are refused and the
	// error shows the URL redacted.
	withCreds := strings.Replace(url, "nats://", "nats://bridge:"+pw+"@", 1)
	mustConnect(t, natsbus.Options{URL: withCreds})
	wantRefused(t, natsbus.Options{URL: strings.Replace(url, "nats://", "nats://bridge:wrong-url-pw@", 1)}, "authorization violation", "wrong-url-pw")

	wantRefused(t, natsbus.Options{URL: url, User: "bridge", Password: "wrong-" + pw}, "authorization violation", pw)
	wantRefused(t, natsbus.Options{URL: url, User: "nobody", Password: pw}, "authorization violation", pw)
	wantRefused(t, natsbus.Options{URL: url}, "authorization violation")
}

func TestConnectToken(t *testing.T) {
	t.Parallel()
	const tok = "tok-3b8e5d21-token"
	srv := startServer(t, &server.Options{Authorization: tok})
	mustConnect(t, natsbus.Options{URL: srv.ClientURL(), Token: tok})
	wantRefused(t, natsbus.Options{URL: srv.ClientURL(), Token: "not-" + tok}, "authorization violation", tok)
}

// writeSeed creates an NKey user and writes its seed to a 0600 file.
func writeSeed(t *testing.T, dir, name string) (file, public string, seed []byte) {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, err = kp.Seed()
	if err != nil {
		t.Fatal(err)
	}
	public, err = kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	file = filepath.Join(dir, name)
	if err := os.WriteFile(file, append(seed, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	return file, public, seed
}

func TestConnectNKey(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good, pub, seed := writeSeed(t, dir, "bridge.nk")
	other, _, otherSeed := writeSeed(t, dir, "stranger.nk")
	srv := startServer(t, &server.Options{Nkeys: []*server.NkeyUser{{Nkey: pub}}})
	url := srv.ClientURL()

	mustConnect(t, natsbus.Options{URL: url, NKeySeedFile: good})
	// A valid key the server does not know.
	wantRefused(t, natsbus.Options{URL: url, NKeySeedFile: other}, "authorization violation", string(otherSeed))
	// No key at all.
	wantRefused(t, natsbus.Options{URL: url}, "authorization violation")
	// A missing or unreadable seed file fails before dialling and says so.
	wantRefused(t, natsbus.Options{URL: url, NKeySeedFile: filepath.Join(dir, "missing.nk")}, "nkey seed file")
	garbage := filepath.Join(dir, "garbage.nk")
	if err := os.WriteFile(garbage, []byte("not-a-seed-but-a-secret-4411\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	wantRefused(t, natsbus.Options{URL: url, NKeySeedFile: garbage}, "nkey seed file", "not-a-seed-but-a-secret-4411", string(seed))
}
