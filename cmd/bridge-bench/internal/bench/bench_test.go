package bench

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// testEnv is an Env for tests: a tiny plan, temp dirs, no progress.
func testEnv(t testing.TB, plan Plan) *Env {
	t.Helper()
	return &Env{plan: plan, log: zerolog.Nop(), tmp: t.TempDir(), c: newCollector()}
}

func tinyPlan() Plan {
	p := QuickPlan()
	// InboundConns stays 1 until bridge.Run stops writing its platformOf
	// map while earlier connections' supervisors read it (a data race
	// with two or more connections, bridge/bridge.go); then make it 3.
	p.InboundEvents, p.InboundConns = 300, 1
	p.LatencyRate, p.LatencyDuration = 500, 400*time.Millisecond
	p.CommandsCount, p.CommandsRooms = 60, 3
	p.DispatchRate, p.DispatchDuration, p.DispatchRooms = 200, 300*time.Millisecond, 3
	p.GapFillBacklog, p.GapFillRooms = 250, 2
	p.ChatAPIChats, p.ChatAPIAgents, p.ChatAPIFragments = 6, 3, 20
	return p
}

// TestScenariosSmoke runs every in-process scenario once at toy sizes and
// checks that each records its figures. (scale needs the bench binary as
// its children; it is exercised by running cmd/bridge-bench.)
func TestScenariosSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a dozen emulators, NATS servers and bridges")
	}
	e := testEnv(t, tinyPlan())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for name, f := range map[string]func(context.Context, int) error{
		"inbound": e.inbound, "latency": e.latency, "commands": e.commands, "dispatch": e.dispatch, "gapfill": e.gapfill, "chatapi": e.chatapi,
	} {
		if err := f(ctx, 1); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	figs := e.c.figures()
	groups := map[string]int{}
	for _, f := range figs {
		if len(f.Runs) > 0 {
			groups[f.Group]++
			if f.Median != f.Median { // NaN
				t.Errorf("%s / %s: median is NaN", f.Group, f.Name)
			}
		}
	}
	for _, g := range []string{"inbound", "latency", "commands", "dispatch", "gapfill", "chatapi"} {
		if groups[g] == 0 {
			t.Errorf("no figures for %s", g)
		}
	}
	rep := &Report{Figures: figs, Targets: targets(figs), Machine: describeMachine()}
	var b strings.Builder
	if err := rep.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "bridge ÷ baseline 1") {
		t.Errorf("table lacks the inbound ratio:\n%s", b.String())
	}
}

func TestParseOnly(t *testing.T) {
	got, err := ParseOnly("scale, inbound,scale")
	if err != nil || strings.Join(got, ",") != "scale,inbound" {
		t.Fatalf("ParseOnly = %v, %v", got, err)
	}
	if _, err := ParseOnly("inbound,nope"); err == nil {
		t.Fatal("unknown scenario accepted")
	}
}

func TestPercentileAndNum(t *testing.T) {
	l := latencies{5, 1, 4, 2, 3, 6, 7, 8, 9, 10}
	if p := l.percentile(0.5); p != 5 {
		t.Errorf("p50 = %v", p)
	}
	if p := l.percentile(0.99); p != 10 {
		t.Errorf("p99 = %v", p)
	}
	for v, want := range map[float64]string{123456.4: "123,456", 0.1234: "0.123", 12.34: "12.3", -1500: "-1,500"} {
		if got := num(v); got != want {
			t.Errorf("num(%v) = %q, want %q", v, got, want)
		}
	}
}

// Benchmarks run one pipeline alone, for profiling, e.g.
//
//	go test ./internal/bench -run '^$' -bench 'Inbound/bridge/100' -benchtime 40000x -cpuprofile cpu.out
//
// They only run under -bench.
func BenchmarkInbound(b *testing.B) {
	for _, k := range []kind{kindSource, kindBaseline, kindBridge} {
		for _, conns := range []int{1, 100} {
			b.Run(strings.ReplaceAll(k.String(), " ", "")+"/"+strconv.Itoa(conns), func(b *testing.B) {
				e := testEnv(b, QuickPlan())
				emu, err := startEmu(emuOptions(), conns, 1)
				if err != nil {
					b.Fatal(err)
				}
				defer emu.close()
				p, err := startPipeline(context.Background(), k, emu, e.dir(), e)
				if err != nil {
					b.Fatal(err)
				}
				defer p.close()
				if err := p.warmUp(context.Background()); err != nil {
					b.Fatal(err)
				}
				b.ResetTimer()
				r, err := p.throughput(context.Background(), b.N)
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(r.perSec, "events/s")
				b.ReportMetric(float64(r.cpu.Nanoseconds())/1000, "µs-cpu/event")
			})
		}
	}
}

// BenchmarkCommands runs baseline 2 or the bridge's executor alone on the
// commands workload (b.N commands over CommandsRooms rooms), for
// profiling, e.g.
//
//	go test ./internal/bench -run '^$' -bench 'Commands/bridge' -benchtime 20000x -cpuprofile cpu.out
func BenchmarkCommands(b *testing.B) {
	for _, name := range []string{"baseline2", "bridge"} {
		b.Run(name, func(b *testing.B) {
			e := testEnv(b, QuickPlan())
			var r rate
			var err error
			if name == "bridge" {
				r, err = e.bridgeCommands(context.Background(), b.N, e.plan.CommandsRooms)
			} else {
				r, err = e.baseline2Once(context.Background(), b.N, e.plan.CommandsRooms, false)
			}
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(r.perSec, "commands/s")
			b.ReportMetric(float64(r.cpu.Nanoseconds())/1000, "µs-cpu/command")
		})
	}
}

// BenchmarkDispatch runs the straight-line dispatch baseline or managed
// dispatch alone at DispatchRate for b.N messages, for profiling, e.g.
//
//	go test ./internal/bench -run '^$' -bench 'Dispatch/bridge' -benchtime 5000x -cpuprofile cpu.out
func BenchmarkDispatch(b *testing.B) {
	for _, name := range []string{"baseline", "bridge"} {
		b.Run(name, func(b *testing.B) {
			plan := QuickPlan()
			plan.DispatchDuration = time.Duration(b.N) * time.Second / time.Duration(plan.DispatchRate)
			e := testEnv(b, plan)
			var cpu time.Duration
			if name == "bridge" {
				rt, err := e.dispatchRoundTrip(context.Background())
				if err != nil {
					b.Fatal(err)
				}
				cpu = rt.cpu
			} else {
				c, err := e.dispatchBaseline(context.Background())
				if err != nil {
					b.Fatal(err)
				}
				cpu = c
			}
			b.ReportMetric(float64(cpu.Nanoseconds())/1000, "µs-cpu/message")
		})
	}
}
