package e2e

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Node returns the node binary after making sure dir's dependencies are
// installed: it runs npm ci when any of the packages in need is missing
// from dir/node_modules, one install at a time per directory. It skips the test when node or npm is not on PATH
// or npm cannot reach its registry; under CI=true a failed install fails
// the test instead, so CI cannot pass by skipping.
func Node(t testing.TB, dir string, need ...string) string {
	t.Helper()
	node, errNode := exec.LookPath("node")
	npm, errNpm := exec.LookPath("npm")
	if errNode != nil || errNpm != nil {
		t.Skip("node and npm must be on PATH to run this test (.ci/run installs them)")
	}
	installed := func() bool {
		for _, pkg := range need {
			if st, err := os.Stat(filepath.Join(dir, "node_modules", pkg)); err != nil || !st.IsDir() {
				return false
			}
		}
		return true
	}
	if installed() {
		return node
	}
	// One install at a time per directory; a test that waited finds the
	// packages another one installed.
	unlock := lockInstall(t, dir)
	defer unlock()
	if installed() {
		return node
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund")
	cmd.Dir = dir
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	switch {
	case err == nil:
		return node
	case os.Getenv("CI") == "true":
		t.Fatalf("npm ci in %s failed (CI=true, not skipping): %v\n%s", dir, err, out)
	case isNetworkFailure(out) || errors.Is(ctx.Err(), context.DeadlineExceeded):
		t.Skipf("npm ci could not reach the registry; skipping: %v\n%s", err, out)
	}
	t.Fatalf("npm ci in %s failed: %v\n%s", dir, err, out)
	return ""
}

func isNetworkFailure(out []byte) bool {
	s := string(out)
	for _, marker := range []string{"ENOTFOUND", "EAI_AGAIN", "ECONNREFUSED", "ECONNRESET", "ETIMEDOUT",
		"ENETUNREACH", "EHOSTUNREACH", "network", "fetch failed", "socket hang up"} {
		if strings.Contains(s, marker) {
			return true
		}
	}
	return false
}
