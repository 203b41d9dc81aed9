package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bridgeworks/bridge/internal/testutil"
)

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func httpGet(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// check-config reports every mistake at once, one line each naming its
// key: the config's own, its files', and the platform's settings.
func TestCheckConfigReportsEveryMistake(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "bad.toml")
	cfg := fmt.Sprintf(`[nats]
url = "::::"
creds_file = %q
duplicate_window = "1m"
[[connection]]
name = "a"
platform = "band"
[connection.settings]
agent_id = "x"
heartbeat_interval = "soon"
api_key_file = %q
`, filepath.Join(dir, "missing.creds"), filepath.Join(dir, "missing-key"))
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"check-config", "--config", path}, &out, &errOut); code != 1 {
		t.Fatalf("exit %d, want 1: %s", code, errOut.String())
	}
	lines := strings.Split(strings.TrimRight(errOut.String(), "\n"), "\n")
	for _, want := range []string{`nats.url: "::::"`, "nats.duplicate_window", "nats.creds_file", "settings.heartbeat_interval", "settings.api_key_file"} {
		n := 0
		for _, l := range lines {
			if strings.Contains(l, want) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%d lines name %s, want 1:\n%s", n, want, errOut.String())
		}
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "bridge check-config: config: ") {
			t.Errorf("line %q does not say where it comes from", l)
		}
	}
}

// A real SIGHUP, caught as main catches it, makes a running bridge read
// its config again: a connection added appears; a config with mistakes is
// refused with each mistake logged, and the bridge runs on.
func TestSIGHUPReloadsConfig(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key")
	if err := os.WriteFile(keyFile, []byte("k\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	httpAddr := freePort(t)
	base := fmt.Sprintf("[nats.embedded]\nlisten = \"none\"\nstore_dir = %q\n[http]\nlisten = %q\n", filepath.Join(dir, "nats"), httpAddr)
	conn := func(name string) string {
		return fmt.Sprintf("[[connection]]\nname = %q\nplatform = \"band\"\nenabled = false\n[connection.settings]\nagent_id = \"x\"\napi_key_file = %q\n", name, keyFile)
	}
	path := filepath.Join(dir, "bridge.toml")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(base + conn("first"))

	ctx, cancel := context.WithCancelCause(context.Background())
	sctx, stop := watchSignals(ctx, cancel)
	t.Cleanup(stop)
	var logs syncBuffer
	done := make(chan int, 1)
	go func() { done <- run(sctx, []string{"run", "--config", path}, io.Discard, &logs) }()
	t.Cleanup(func() {
		cancel(nil)
		if code := <-done; code != 0 {
			t.Errorf("run: exit %d\n%s", code, logs.String())
		}
	})
	status := func() string { _, b := httpGet("http://" + httpAddr + "/status"); return b }
	testutil.Eventually(t, 20*time.Second, func() bool { c, _ := httpGet("http://" + httpAddr + "/readyz"); return c == 200 }, "bridge ready")

	write(base + conn("first") + conn("second"))
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 20*time.Second, func() bool { return strings.Contains(status(), `"name": "second"`) }, "second connection added by SIGHUP")
	if !strings.Contains(logs.String(), `"signal":"SIGHUP"`) {
		t.Errorf("the signal is not logged")
	}

	write(base + conn("first") + "[lease]\nttl = \"1ms\"\n" + "[[connection]]\nname = \"Bad Name\"\nplatform = \"band\"\n")
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 20*time.Second, func() bool {
		l := logs.String()
		return strings.Contains(l, "lease.ttl") && strings.Contains(l, "connection[1].name")
	}, "each mistake of the refused config logged")
	if n := strings.Count(logs.String(), "config reload refused; the running config is kept"); n < 2 {
		t.Errorf("%d refusal lines, want one per mistake:\n%s", n, logs.String())
	}
	if s := status(); !strings.Contains(s, `"name": "second"`) || !strings.Contains(s, `"name": "first"`) {
		t.Errorf("the running config was not kept:\n%s", s)
	}
	// The log stamps milliseconds.
	if !strings.Contains(logs.String(), `"time":"`) || strings.Count(strings.SplitN(strings.SplitN(logs.String(), `"time":"`, 2)[1], `"`, 2)[0], ".") != 1 {
		t.Errorf("log time is not to the millisecond: %s", strings.SplitN(logs.String(), "\n", 2)[0])
	}
}
