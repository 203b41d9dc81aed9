package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/bridgeworks/bridge/bridge"
	"github.com/bridgeworks/bridge/emulator/bandemu"
)

// The scale scenario runs the platform emulator, the NATS server and the
// bridge in three child processes, so that each child's RSS, heap and
// goroutines are its own: the bridge's per-connection cost and the NATS
// server's are measured apart. The children are the bench binary itself,
// started with a hidden first argument (see [ChildMain]).
//
// Protocol: the parent writes a child's input, if any, as one JSON line on
// its stdin; the child prints one JSON line once ready, then answers each
// request line on stdin with one JSON line, and exits at stdin EOF.
const (
	childEmulator = "child-emulator"
	childNATS     = "child-nats"
	childBridge   = "child-bridge"
)

// Requests a child answers (see serveRequests).
const (
	reqMem   = "mem"   // the child's MemSnapshot
	reqDials = "dials" // the Band emulator's bandemu.DialStats
	// reqMark notes the time; reqDialsSinceMark is the Band emulator's
	// bandemu.DialStats of the dials since then (a restart's).
	reqMark           = "mark"
	reqDialsSinceMark = "dials-since-mark"
)

// IsChild reports whether a first command-line argument selects a child
// mode of the bench binary.
func IsChild(arg string) bool {
	return arg == childEmulator || arg == childNATS || arg == childBridge || arg == childPolyAIPlatform || arg == childPolyAIBridge
}

// ChildMain runs a child mode; stdin and stdout carry its protocol.
func ChildMain(ctx context.Context, mode string, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if err := raiseFileLimit(); err != nil {
		return err
	}
	// BENCH_CHILD_LOG=warn (or info, debug) shows more of a child's log
	// and makes the bridge child print its start-up progress.
	level := zerolog.ErrorLevel
	if l, err := zerolog.ParseLevel(os.Getenv("BENCH_CHILD_LOG")); err == nil && l != zerolog.NoLevel {
		level = l
	}
	log := zerolog.New(stderr).Level(level).With().Timestamp().Str("child", mode).Logger()
	in := bufio.NewReader(stdin)
	switch mode {
	case childEmulator:
		return emulatorChild(ctx, args, in, stdout)
	case childNATS:
		return natsChild(ctx, args, in, stdout, log)
	case childBridge:
		return bridgeChild(ctx, in, stdout, log)
	case childPolyAIPlatform:
		return polyPlatformChild(ctx, args, in, stdout, log)
	case childPolyAIBridge:
		return polyBridgeChild(ctx, in, stdout, log)
	}
	return fmt.Errorf("unknown child mode %q", mode)
}

// serveRequests answers request lines from in with one JSON line each on
// out until EOF or ctx's end. An unknown request gets {"error": …}.
func serveRequests(ctx context.Context, in *bufio.Reader, out io.Writer, handlers map[string]func() any) error {
	lines := make(chan string)
	go func() { // owned: ends at stdin EOF, which the parent guarantees (it closes stdin or exits), or with ctx
		defer close(lines)
		for {
			line, err := in.ReadString('\n')
			if len(line) > 0 {
				select {
				case lines <- line:
				case <-ctx.Done():
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	enc := json.NewEncoder(out)
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				return nil
			}
			req := strings.TrimSpace(line)
			h := handlers[req]
			var v any = map[string]string{"error": fmt.Sprintf("unknown request %q", req)}
			if h != nil {
				v = h()
			}
			if err := enc.Encode(v); err != nil {
				return err
			}
		case <-ctx.Done():
			return nil
		}
	}
}

// platformInfo is what the emulator child prints once ready.
type platformInfo struct {
	URL    string      `json:"url"`
	Agents []agentRoom `json:"agents"`
}

// emulatorChild serves a Band emulator with -agents agents (each owning
// -rooms rooms), prints a platformInfo line, answers reqDials, reqMark,
// reqDialsSinceMark and reqMem,
// and stops at stdin EOF.
func emulatorChild(ctx context.Context, args []string, in *bufio.Reader, stdout io.Writer) error {
	fs := flag.NewFlagSet(childEmulator, flag.ContinueOnError)
	agents := fs.Int("agents", 0, "agents to create")
	rooms := fs.Int("rooms", 1, "rooms per agent")
	if err := fs.Parse(args); err != nil {
		return err
	}
	emu, err := startEmu(bandemu.Options{}, max(*agents, 1), *rooms)
	if err != nil {
		return err
	}
	defer emu.close()
	if err := json.NewEncoder(stdout).Encode(platformInfo{URL: emu.url, Agents: emu.agents[:*agents]}); err != nil {
		return err
	}
	var mark time.Time // handlers run one at a time
	return serveRequests(ctx, in, stdout, map[string]func() any{
		reqDials:          func() any { return emu.emu.DialStats() },
		reqMark:           func() any { mark = time.Now(); return struct{}{} },
		reqDialsSinceMark: func() any { return emu.emu.DialStatsSince(mark) },
		reqMem:            func() any { return memSnapshot() },
	})
}

// natsInfo is what the NATS child prints once ready.
type natsInfo struct {
	URL string `json:"url"`
}

// natsChild serves an embedded NATS server (JetStream, file store, the
// bridge's streams) on a 127.0.0.1 port, prints a natsInfo line, answers
// reqMem with its own memory (the server's, with one idle client), and
// stops at stdin EOF. -cpuprofile writes the CPU profile of its whole life.
func natsChild(ctx context.Context, args []string, in *bufio.Reader, stdout io.Writer, log zerolog.Logger) error {
	fs := flag.NewFlagSet(childNATS, flag.ContinueOnError)
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile to this file")
	if err := fs.Parse(args); err != nil {
		return err
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
	dir, err := os.MkdirTemp("", "bridge-bench-nats-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ne, err := startNATS(ctx, dir, baselineWindow, log)
	if err != nil {
		return err
	}
	defer ne.close()
	if err := json.NewEncoder(stdout).Encode(natsInfo{URL: ne.url()}); err != nil {
		return err
	}
	err = serveRequests(ctx, in, stdout, map[string]func() any{
		reqMem: func() any { return memSnapshot() },
	})
	pprof.StopCPUProfile() // before the server's shutdown, which may be killed
	return err
}

// bridgeSpecJSON is the bridge child's input.
type bridgeSpecJSON struct {
	EmulatorURL string        `json:"emulator_url"`
	NATS        string        `json:"nats"`
	Agents      []agentRoom   `json:"agents"`
	Heartbeat   time.Duration `json:"heartbeat"`
	Settle      time.Duration `json:"settle"`
	Timeout     time.Duration `json:"timeout"`
	// Profile, when set, is a path prefix: the child writes its heap
	// profile to Profile+".heap" and its goroutines to Profile+".goroutine"
	// when it reads its memory (heap sampled every 4 KiB, not 512 KiB).
	Profile string `json:"profile,omitempty"`
}

// bridgeResult is the bridge child's output.
type bridgeResult struct {
	Conns      int         `json:"conns"`
	ConnectSec float64     `json:"connect_seconds"`
	Before     MemSnapshot `json:"before"`
	After      MemSnapshot `json:"after"`
	FileLimit  uint64      `json:"file_limit"`
}

// bridgeChild runs a bridge with one connection per agent against the
// emulator and NATS children, waits until every connection finished its
// first catch-up (its gap_filled lifecycle event is stored), lets it idle
// for Settle with heartbeats running, then prints its memory as a
// bridgeResult, and keeps the connections open (so the other children can
// be measured with them) until stdin EOF.
func bridgeChild(ctx context.Context, in *bufio.Reader, stdout io.Writer, log zerolog.Logger) error {
	line, err := in.ReadBytes('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("spec: %w", err)
	}
	var spec bridgeSpecJSON
	if err := json.Unmarshal(line, &spec); err != nil {
		return fmt.Errorf("spec: %w", err)
	}
	if spec.Profile != "" {
		runtime.MemProfileRate = 4096
	}
	n := len(spec.Agents)
	res := bridgeResult{Conns: n, FileLimit: fileLimit(), Before: memSnapshot()}
	rctx, cancel := context.WithTimeout(ctx, spec.Timeout)
	defer cancel()
	// Subscribed before the bridge starts, so no gap_filled is missed; a
	// core subscription costs the server nothing per poll, unlike stream
	// info listing thousands of subjects.
	caughtUp, err := watchSubjects(spec.NATS, "bridge.sys.band.*.gap_filled", n)
	if err != nil {
		return err
	}
	defer caughtUp.close()
	stopCPU := func() {}
	if spec.Profile != "" {
		// The start-up's CPU profile: until every connection caught up.
		if stopCPU, err = startCPUProfile(spec.Profile + ".cpu"); err != nil {
			return err
		}
		defer stopCPU()
	}
	start := time.Now()
	bs := bridgeSpec{
		emuURL: spec.EmulatorURL, natsURL: spec.NATS, agents: spec.Agents, log: log,
		heartbeat: spec.Heartbeat, readyTimeout: spec.Timeout,
	}
	if _, set := os.LookupEnv("GOGC"); !set {
		bs.startGC = bridge.StartGCPercent // as cmd/bridge runs
	}
	b, err := startBridge(rctx, bs)
	if err != nil {
		return err
	}
	defer b.stopWithin(10 * time.Second)
	stopProgress := progress(log, start, spec.NATS, caughtUp, n)
	defer stopProgress()
	select {
	case <-caughtUp.done:
	case <-rctx.Done():
		return fmt.Errorf("connections: %d of %d caught up: %w", caughtUp.count(), n, rctx.Err())
	}
	res.ConnectSec = time.Since(start).Seconds()
	stopCPU()
	stopProgress()
	select {
	case <-time.After(spec.Settle):
	case <-rctx.Done():
		return rctx.Err()
	}
	res.After = memSnapshot()
	if p := os.Getenv("BENCH_HEAPDUMP"); p != "" {
		if f, err := os.Create(p); err == nil {
			debug.WriteHeapDump(f.Fd())
			f.Close()
		}
	}
	if spec.Profile != "" {
		if err := writeProfiles(spec.Profile); err != nil {
			return err
		}
	}
	if err := json.NewEncoder(stdout).Encode(res); err != nil {
		return err
	}
	return serveRequests(ctx, in, stdout, map[string]func() any{reqMem: func() any { return memSnapshot() }})
}

// subjectWatch counts the distinct subjects of the messages a core NATS
// subscription receives; done is closed when there are want of them.
type subjectWatch struct {
	nc   *nats.Conn
	mu   sync.Mutex
	seen map[string]bool
	done chan struct{}
}

func watchSubjects(url, filter string, want int) (*subjectWatch, error) {
	nc, err := nats.Connect(url, nats.Name("bench-watch"))
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", filter, err)
	}
	w := &subjectWatch{nc: nc, seen: map[string]bool{}, done: make(chan struct{})}
	if want <= 0 {
		close(w.done)
	}
	_, err = nc.Subscribe(filter, func(m *nats.Msg) {
		w.mu.Lock()
		defer w.mu.Unlock()
		if !w.seen[m.Subject] {
			w.seen[m.Subject] = true
			if len(w.seen) == want {
				close(w.done)
			}
		}
	})
	if err == nil {
		err = nc.Flush()
	}
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("watch %s: %w", filter, err)
	}
	return w, nil
}

func (w *subjectWatch) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.seen)
}

func (w *subjectWatch) close() { w.nc.Close() }

// writeProfiles writes the heap profile and a goroutine dump.
func writeProfiles(prefix string) error {
	for name, debug := range map[string]int{"heap": 0, "goroutine": 1} {
		f, err := os.Create(prefix + "." + name)
		if err != nil {
			return err
		}
		err = pprof.Lookup(name).WriteTo(f, debug)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// progress logs, at info level every 5 s until stopped, how many of n
// connections caught up and how many lifecycle events of each kind the
// bridge stored: the start-up's timeline.
func progress(log zerolog.Logger, start time.Time, natsURL string, caughtUp *subjectWatch, n int) (stop func()) {
	if log.GetLevel() > zerolog.InfoLevel {
		return func() {}
	}
	nc, err := nats.Connect(natsURL, nats.Name("bench-progress"))
	if err != nil {
		return func() {}
	}
	var mu sync.Mutex
	kinds := map[string]int{}
	_, _ = nc.Subscribe("bridge.sys.band.*.*", func(m *nats.Msg) {
		mu.Lock()
		kinds[m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]]++
		mu.Unlock()
	})
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			mu.Lock()
			k := fmt.Sprint(kinds)
			mu.Unlock()
			log.Info().Float64("t", time.Since(start).Seconds()).Int("caught_up", caughtUp.count()).Int("of", n).
				Int("goroutines", runtime.NumGoroutine()).Str("lifecycle", k).Msg("progress")
		}
	})
	var once sync.Once
	return func() {
		once.Do(func() {
			close(done)
			wg.Wait()
			nc.Close()
		})
	}
}

// startCPUProfile writes a CPU profile to path until stop is called.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			pprof.StopCPUProfile()
			f.Close()
		})
	}, nil
}
