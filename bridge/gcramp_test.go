package bridge

import (
	"runtime/debug"
	"testing"
	"time"
)

// gcPercent reads the collector's target (setting it back at once).
func gcPercent() int {
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	return p
}

// TestGCRampLowersWhileConnectionsStart: a start lowers the collector's
// target, further starts keep it low, it comes back once none started for
// the hold, and stop gives it back too. Not parallel: the target is the
// process's.
func TestGCRampLowersWhileConnectionsStart(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	if newGCRamp(0) != nil {
		t.Fatal("a ramp of 0 is not off")
	}
	var off *gcRamp
	off.started() // off: nothing happens
	off.stop()
	g := newGCRamp(37)
	g.hold = 100 * time.Millisecond
	g.started()
	if got := gcPercent(); got != 37 {
		t.Fatalf("target %d after a start, want 37", got)
	}
	g.started()
	deadline := time.Now().Add(5 * time.Second)
	for g.lowered() {
		if time.Now().After(deadline) {
			t.Fatal("the target never came back after the hold")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := gcPercent(); got != 100 {
		t.Fatalf("target %d after the hold, want 100 back", got)
	}
	g.hold = time.Hour
	g.started()
	g.stop()
	if got := gcPercent(); got != 100 || g.lowered() {
		t.Fatalf("target %d after stop, want 100 back", got)
	}
	g.started() // stopped: no more lowering
	if got := gcPercent(); got != 100 {
		t.Fatalf("target %d after a start past stop, want 100", got)
	}
}
