package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// Options configure [Run].
type Options struct {
	Plan Plan
	// Only lists the scenarios to run (see [Scenarios]); empty runs all.
	Only []string
	// Log receives the bridge's and the servers' logs; default none.
	Log zerolog.Logger
	// Progress receives one line per measurement; default none.
	Progress io.Writer
	// Self is the bench executable, re-run as child processes by the
	// scale scenario (see [ChildMain]); default os.Executable().
	Self string
	// Command is the command line, recorded in the report.
	Command string
	// ChildProfiles, when set, is a path prefix for the heap profile and
	// goroutine dump of each scale bridge child (PREFIX.scale-N.heap, …).
	ChildProfiles string
}

// Env is what the scenarios share during one [Run].
type Env struct {
	plan     Plan
	log      zerolog.Logger
	progress io.Writer
	self     string
	tmp      string
	profiles string
	dirs     atomic.Int64
	c        *collector
	notes    []string
	errs     []string
}

// dir returns a fresh directory for one JetStream store.
func (e *Env) dir() string {
	d := filepath.Join(e.tmp, fmt.Sprintf("s%04d", e.dirs.Add(1)))
	_ = os.MkdirAll(d, 0o755)
	return d
}

// removeDir deletes a store directory once its server stopped, keeping
// the disk use of a long run small.
func (e *Env) removeDir(d string) { _ = os.RemoveAll(d) }

func (e *Env) logf(format string, args ...any) {
	if e.progress != nil {
		fmt.Fprintf(e.progress, format+"\n", args...)
	}
}

// note adds a line to the report's notes, once.
func (e *Env) note(format string, args ...any) {
	n := fmt.Sprintf(format, args...)
	if !slices.Contains(e.notes, n) {
		e.notes = append(e.notes, n)
	}
}

// Run runs the selected scenarios, each Plan.Runs times, and returns the
// report. A scenario that fails is reported in Report.Errors; the others
// still run. Run returns an error only when it cannot start at all.
func Run(ctx context.Context, o Options) (*Report, error) {
	if o.Plan.Runs < 1 {
		return nil, fmt.Errorf("bench: runs must be at least 1")
	}
	if len(o.Only) == 0 {
		o.Only = Scenarios()
	}
	if o.Self == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		o.Self = exe
	}
	tmp, err := os.MkdirTemp("", "bridge-bench-")
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	defer os.RemoveAll(tmp)
	if err := raiseFileLimit(); err != nil {
		return nil, err
	}
	e := &Env{plan: o.Plan, log: o.Log, progress: o.Progress, self: o.Self, tmp: tmp, profiles: o.ChildProfiles, c: newCollector()}
	rep := &Report{Machine: describeMachine(), Command: o.Command, Mode: o.Plan.Mode, Runs: o.Plan.Runs,
		Scenarios: o.Only, Started: time.Now().UTC()}
	scenarios := map[string]func(context.Context, int) error{
		"inbound": e.inbound, "latency": e.latency, "commands": e.commands, "dispatch": e.dispatch, "scale": e.scale, "gapfill": e.gapfill, "chatapi": e.chatapi,
		"scale_polyai": e.scalePolyAI,
	}
	for _, name := range o.Only {
		runs := o.Plan.Runs
		if (name == "scale" || name == "scale_polyai") && o.Plan.ScaleRuns > 0 {
			runs = min(runs, o.Plan.ScaleRuns)
		}
		for run := 1; run <= runs; run++ {
			if ctx.Err() != nil {
				break
			}
			e.logf("== %s, run %d/%d", name, run, runs)
			lm := startLoadMeter()
			err := scenarios[name](ctx, run)
			if other := lm.others(); other >= 0 {
				e.c.add("machine", otherCPUPrefix+name, "cores", other)
				e.logf("   (other processes kept %.2f of %d cores busy)", other, rep.Machine.CPUs)
			}
			if err != nil {
				msg := fmt.Sprintf("%s run %d: %v", name, run, err)
				e.errs = append(e.errs, msg)
				e.logf("!! %s", msg)
			}
		}
	}
	rep.Elapsed = time.Since(rep.Started).Seconds()
	rep.Figures = e.c.figures()
	rep.Targets = targets(rep.Figures)
	rep.Notes = append(rep.Notes, e.notes...)
	rep.Errors = e.errs
	return rep, ctx.Err()
}
