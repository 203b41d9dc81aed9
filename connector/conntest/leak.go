package conntest

import (
	"bytes"
	"runtime"
	"strings"
	"testing"
	"time"
)

// goroutinesOf returns the goroutines (id → stack) whose stack runs, or was
// started by, code of one of pkgs. A frame line reads "<pkg>.<func>(…)" and
// a creator line "created by <pkg>.<func> in goroutine N", so "<pkg>." is
// matched: "…/band." does not match "…/bandemu." nor "…/band_test.".
func goroutinesOf(pkgs []string) map[string]string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	out := map[string]string{}
	for _, g := range bytes.Split(buf, []byte("\n\n")) {
		s := string(g)
		head, _, _ := strings.Cut(s, "\n")
		id, _, _ := strings.Cut(strings.TrimPrefix(head, "goroutine "), " ")
		for _, p := range pkgs {
			if p != "" && strings.Contains(s, p+".") {
				out[id] = s
				break
			}
		}
	}
	return out
}

// checkNoLeak waits until no goroutine of pkgs runs that did not run at
// before, and fails with their stacks if some still do at the deadline.
func checkNoLeak(t *testing.T, pkgs []string, before map[string]string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	wait := time.Millisecond
	for {
		var left []string
		for id, stack := range goroutinesOf(pkgs) {
			if _, old := before[id]; !old {
				left = append(left, stack)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%d goroutine(s) of %s still running %s after Close:\n\n%s",
				len(left), strings.Join(pkgs, ", "), timeout, strings.Join(left, "\n\n"))
			return
		}
		time.Sleep(wait)
		wait = min(wait*2, 50*time.Millisecond)
	}
}
