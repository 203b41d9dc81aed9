package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bridgeworks/bridge/internal/testutil"
)

func TestDemoProcessesEveryMessage(t *testing.T) {
	t.Parallel()
	var out, errOut bytes.Buffer
	ctx := testutil.Context(t, 60*time.Second)
	err := runDemo(ctx, demoOptions{rooms: 2, messages: 3, rate: 50, natsAddr: "127.0.0.1:0"}, &out, &errOut)
	if err != nil {
		t.Fatalf("demo: %v\n%s\n%s", err, out.String(), errOut.String())
	}
	if !strings.Contains(out.String(), "6 of 6 messages processed") {
		t.Fatalf("no success summary:\n%s", out.String())
	}
}

func TestBrokenConfigIsOneLine(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(path, []byte("[nats]\nduplicate_window = \"1m\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"run", "check-config"} {
		var out, errOut bytes.Buffer
		code := run(context.Background(), []string{cmd, "--config", path}, &out, &errOut)
		if code == 0 {
			t.Fatalf("%s: exit 0 on a broken config", cmd)
		}
		msg := strings.TrimRight(errOut.String(), "\n")
		if strings.Count(msg, "\n") != 0 || !strings.Contains(msg, "nats.duplicate_window") {
			t.Errorf("%s: want one line naming the key, got %q", cmd, errOut.String())
		}
	}
}

func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// The example config runs on embedded NATS; another process sees the streams.
func TestRunExampleConfig(t *testing.T) {
	natsAddr, httpAddr := freePort(t), freePort(t)
	t.Setenv("BAND_API_KEY", "example-key")
	t.Setenv("BRIDGE_NATS_EMBEDDED_LISTEN", natsAddr)
	t.Setenv("BRIDGE_NATS_EMBEDDED_STORE_DIR", t.TempDir())
	t.Setenv("BRIDGE_HTTP_LISTEN", httpAddr)
	t.Setenv("BRIDGE_CONNECTION_SUPPORT_BOT_ENABLED", "false") // no real Band here
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	var errOut bytes.Buffer
	go func() {
		done <- run(ctx, []string{"run", "--config", "../../config.example.toml"}, &bytes.Buffer{}, &errOut)
	}()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("exit %d: %s", code, errOut.String())
		}
	})
	testutil.Eventually(t, 20*time.Second, func() bool {
		resp, err := http.Get("http://" + httpAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}, "readyz 200")
	nc, err := nats.Connect("nats://" + natsAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	for _, name := range []string{"BRIDGE_EVENTS", "BRIDGE_COMMANDS", "BRIDGE_DLQ"} {
		if _, err := js.Stream(testutil.Context(t, 5*time.Second), name); err != nil {
			t.Errorf("stream %s: %v", name, err)
		}
	}
}
