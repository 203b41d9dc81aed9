package bridge

import (
	"runtime/debug"
	"sync"
	"time"
)

// gcRamp runs the collector at a lower target (Options.StartGCPercent)
// while connections start, and gives the previous target back once none
// started for rampHold.
//
// Why: a starting connection allocates several times what it keeps (REST
// reads, JSON, NATS and HTTP requests), and what it keeps lands in the same
// spans as that garbage. The collector frees the garbage but cannot move
// what is kept, so each span a kept object shares stays in use. How much
// garbage sits beside the kept objects at the end of a start is about the
// garbage of the collector's last cycle, which the target sets: at 50
// instead of the default 100, 10,000 idle Band connections left about
// 6 KiB per connection of part-filled spans instead of about 11. Running at
// 50 for good would cost throughput (≈ 15–20 % more CPU per event under a
// heavy inbound load), so the lower target lasts only while connections
// start.
type gcRamp struct {
	pct  int           // the target while connections start
	hold time.Duration // how long it lasts after the last start (rampHold)

	mu    sync.Mutex
	low   bool        // the lower target is in force
	prev  int         // the target it replaced
	timer *time.Timer // gives prev back rampHold after the last start
	done  bool        // stopped: no more lowering
}

// StartGCPercent is the collector's target the bridge program runs at
// while connections start (Options.StartGCPercent), unless GOGC is set.
const StartGCPercent = 50

// rampHold is how long the lower target lasts after the last start: a
// connection's catch-up follows its start within seconds.
const rampHold = 5 * time.Second

// newGCRamp returns a ramp to pct while connections start; pct <= 0 turns
// it off (nil).
func newGCRamp(pct int) *gcRamp {
	if pct <= 0 {
		return nil
	}
	return &gcRamp{pct: pct, hold: rampHold}
}

// started notes a connection's start: the target is lowered, if it was
// not, until rampHold passes without another.
func (g *gcRamp) started() {
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.done {
		return
	}
	if !g.low {
		g.low = true
		g.prev = debug.SetGCPercent(g.pct)
	}
	if g.timer == nil {
		g.timer = time.AfterFunc(g.hold, g.restore)
	} else {
		g.timer.Reset(g.hold)
	}
}

// lowered reports whether the lower target is in force.
func (g *gcRamp) lowered() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.low
}

// restore gives the previous target back.
func (g *gcRamp) restore() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.low {
		g.low = false
		debug.SetGCPercent(g.prev)
	}
}

// stop ends the ramp and gives the previous target back.
func (g *gcRamp) stop() {
	if g == nil {
		return
	}
	g.mu.Lock()
	g.done = true
	if g.timer != nil {
		g.timer.Stop()
	}
	g.mu.Unlock()
	g.restore()
}
