// Command bridge-bench measures the bridge against its straight-line
// baselines on one machine (issue #6), with embedded NATS and the platform
// emulators, and prints a table (or JSON) where each figure is the median
// of N runs with min and max.
//
//	go run ./cmd/bridge-bench                  full run (3 runs per figure, < 5 min on 2 cores)
//	go run ./cmd/bridge-bench --quick          quick run (1 run, smaller sizes, < 1 min)
//	go run ./cmd/bridge-bench --only inbound,latency --runs 5
//	go run ./cmd/bridge-bench --json > bench.json
//	go run ./cmd/bridge-bench --cpuprofile cpu.out --only inbound
//
// Scenarios: inbound, latency, commands, dispatch, scale, scale_polyai, gapfill, chatapi
// (see package cmd/bridge-bench/internal/bench). The scale scenarios re-run this binary as
// child processes (hidden first arguments child-emulator and child-bridge, and
// child-polyai-platform and child-polyai-bridge), so profiles cover every scenario but
// the scale scenarios' bridges.
//
// main is the only place that exits.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"

	"github.com/rs/zerolog"

	"github.com/bridgeworks/bridge/cmd/bridge-bench/internal/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	var err error
	if len(os.Args) > 1 && bench.IsChild(os.Args[1]) {
		err = bench.ChildMain(ctx, os.Args[1], os.Args[2:], os.Stdin, os.Stdout, os.Stderr)
	} else {
		err = run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	}
	stop()
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errUsage):
		fmt.Fprintf(os.Stderr, "bridge-bench: %v\n", err)
		os.Exit(2)
	default:
		fmt.Fprintf(os.Stderr, "bridge-bench: %v\n", err)
		os.Exit(1)
	}
}

var errUsage = errors.New("usage")

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bridge-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	quick := fs.Bool("quick", false, "quick mode: 1 run, smaller sizes (under a minute)")
	runs := fs.Int("runs", 0, "runs per figure (default 3, or 1 with --quick)")
	asJSON := fs.Bool("json", false, "print the report as JSON instead of a table")
	asMD := fs.Bool("markdown", false, "print the report as Markdown (for docs/PERFORMANCE.md)")
	jsonOut := fs.String("json-out", "", "also write the report as JSON to this file")
	only := fs.String("only", "", "comma-separated scenarios to run: "+strings.Join(bench.Scenarios(), ", "))
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the run to this file")
	memProfile := fs.String("memprofile", "", "write a heap profile (in use and allocations) at the end to this file, the scale bridge children's heap profiles and goroutine dumps to FILE.scale-N.heap / .goroutine, and the scale NATS children's CPU profiles to FILE.scale-N.nats.cpu")
	verbose := fs.Bool("v", false, "log the bridge's and servers' warnings to stderr")
	quiet := fs.Bool("quiet", false, "no progress lines on stderr")
	scaleSizes := fs.String("scale-sizes", "", "comma-separated connection counts of the scale scenario (default 1000,10000; 500 with --quick)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	if *asJSON && *asMD {
		return fmt.Errorf("%w: --json and --markdown exclude each other", errUsage)
	}
	plan := bench.FullPlan()
	if *quick {
		plan = bench.QuickPlan()
	}
	if *runs < 0 {
		return fmt.Errorf("%w: --runs must be positive", errUsage)
	}
	if *runs > 0 {
		plan.Runs = *runs
	}
	if *scaleSizes != "" {
		plan.ScaleSizes = nil
		for _, f := range strings.Split(*scaleSizes, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n <= 0 {
				return fmt.Errorf("%w: --scale-sizes: %q is not a positive connection count", errUsage, f)
			}
			plan.ScaleSizes = append(plan.ScaleSizes, n)
		}
	}
	names, err := bench.ParseOnly(*only)
	if err != nil {
		return fmt.Errorf("%w: --only: %v", errUsage, err)
	}
	opts := bench.Options{Plan: plan, Only: names, Log: zerolog.Nop(), Command: "go run ./cmd/bridge-bench " + strings.Join(args, " ")}
	opts.Command = strings.TrimSpace(opts.Command)
	if *memProfile != "" {
		opts.ChildProfiles = *memProfile
	}
	if *verbose {
		opts.Log = zerolog.New(zerolog.ConsoleWriter{Out: stderr}).Level(zerolog.WarnLevel).With().Timestamp().Logger()
	}
	if !*quiet {
		opts.Progress = stderr
	}

	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	rep, runErr := bench.Run(ctx, opts)
	if rep == nil {
		return runErr
	}
	if *memProfile != "" {
		if err := writeHeapProfile(*memProfile); err != nil {
			return err
		}
	}
	if *jsonOut != "" {
		if err := writeJSONFile(*jsonOut, rep); err != nil {
			return err
		}
	}
	switch {
	case *asJSON:
		err = rep.WriteJSON(stdout)
	case *asMD:
		err = rep.WriteMarkdown(stdout)
	default:
		err = rep.WriteTable(stdout)
	}
	if err != nil {
		return err
	}
	if runErr != nil {
		return runErr
	}
	if len(rep.Errors) > 0 {
		return fmt.Errorf("%d measurement(s) failed (see errors above)", len(rep.Errors))
	}
	return nil
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	runtime.GC()
	return pprof.Lookup("heap").WriteTo(f, 0)
}

func writeJSONFile(path string, rep *bench.Report) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	err = rep.WriteJSON(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
