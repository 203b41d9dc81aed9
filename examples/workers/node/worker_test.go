// Package node holds the test of the Node.js example worker (worker.mjs);
// the worker itself is in JavaScript.
package node

import (
	"bufio"
	"bytes"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bridgeworks/bridge/emulator/bandemu"
	"github.com/bridgeworks/bridge/internal/testutil/e2e"
)

// TestNodeWorker runs worker.mjs on nats.js against the Band emulator, the
// bridge with a dispatch rule and embedded NATS: every user message gets the
// worker's echo on the platform and ends processed. It skips without node
// and npm, or when npm cannot reach its registry (fails instead under
// CI=true).
func TestNodeWorker(t *testing.T) {
	t.Parallel()
	dir, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	node := e2e.Node(t, dir, "@nats-io/transport-node")
	s := e2e.Start(t, e2e.Options{Dispatch: true})
	w := startNode(t, node, dir, s.NATSURL, e2e.Conn)

	ops, support := s.AddRoom("ops"), s.AddRoom("support")
	var posted []bandemu.Message
	for _, text := range []string{"hello", "how are you?", "bye"} {
		posted = append(posted, s.Post(ops.ID, "@Bridge Bot "+text), s.Post(support.ID, text+" from support"))
	}
	s.WaitEchoed(t, posted...)
	for _, m := range posted {
		if !strings.Contains(w.output(), "answered band:"+e2e.Conn+":"+m.ID) {
			t.Errorf("worker output does not mention message %s:\n%s", m.ID, w.output())
		}
	}
}

// nodeWorker is a running worker.mjs; its output is kept for the test.
type nodeWorker struct {
	mu  sync.Mutex
	out bytes.Buffer
}

func (w *nodeWorker) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.out.Write(p)
}

func (w *nodeWorker) output() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.out.String()
}

// startNode runs worker.mjs until the test ends (then SIGTERM: it drains and
// must exit 0) and returns once it is subscribed.
func startNode(t *testing.T, node, dir string, args ...string) *nodeWorker {
	t.Helper()
	w := &nodeWorker{}
	cmd := exec.Command(node, append([]string{"worker.mjs"}, args...)...)
	cmd.Dir = dir
	cmd.Stderr = w
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	scanned := make(chan struct{})
	go func() { // owned: ends when the process closes stdout
		defer close(scanned)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			_, _ = w.Write(append(sc.Bytes(), '\n'))
			if strings.HasPrefix(sc.Text(), "ready:") {
				close(ready)
			}
		}
	}()
	exited := make(chan error, 1)
	go func() { // owned: ends when the process does
		<-scanned
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("worker.mjs did not exit cleanly on SIGTERM: %v\n%s", err, w.output())
			}
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			t.Errorf("worker.mjs ignored SIGTERM for 15s\n%s", w.output())
		}
		if t.Failed() {
			t.Logf("worker.mjs output:\n%s", w.output())
		}
	})
	select {
	case <-ready:
	case err := <-exited:
		exited <- err // for the cleanup
		t.Fatalf("worker.mjs exited before it was ready: %v\n%s", err, w.output())
	case <-time.After(30 * time.Second):
		t.Fatalf("worker.mjs not ready within 30s\n%s", w.output())
	}
	return w
}
