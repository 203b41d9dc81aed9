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
	"runtime/pprof"
	"time"

	"github.com/rs/zerolog"

	"github.com/bridgeworks/bridge/emulator/bandemu"
)

// The scale scenario runs the platform side (emulator and NATS) in one
// child process and the bridge in another, so that the bridge child's RSS,
// heap and goroutines are the bridge's alone. Both children are the bench
// binary itself, started with a hidden first argument (see [ChildMain]).
const (
	childEmulator = "child-emulator"
	childBridge   = "child-bridge"
)

// IsChild reports whether a first command-line argument selects a child
// mode of the bench binary.
func IsChild(arg string) bool {
	return arg == childEmulator || arg == childBridge || arg == childPolyAIPlatform || arg == childPolyAIBridge
}

// ChildMain runs a child mode; stdin and stdout carry its protocol.
func ChildMain(ctx context.Context, mode string, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if err := raiseFileLimit(); err != nil {
		return err
	}
	log := zerolog.New(stderr).Level(zerolog.ErrorLevel).With().Str("child", mode).Logger()
	switch mode {
	case childEmulator:
		return emulatorChild(ctx, args, stdin, stdout, log)
	case childBridge:
		return bridgeChild(ctx, stdin, stdout, log)
	case childPolyAIPlatform:
		return polyPlatformChild(ctx, args, stdin, stdout, log)
	case childPolyAIBridge:
		return polyBridgeChild(ctx, stdin, stdout, log)
	}
	return fmt.Errorf("unknown child mode %q", mode)
}

// platformInfo is what the emulator child prints once ready.
type platformInfo struct {
	URL    string      `json:"url"`
	NATS   string      `json:"nats"`
	Agents []agentRoom `json:"agents"`
}

// emulatorChild serves a Band emulator with -agents agents (each owning
// -rooms rooms) and a NATS server, prints a platformInfo line, and stops
// when stdin reaches EOF (the parent closed it or exited).
func emulatorChild(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer, log zerolog.Logger) error {
	fs := flag.NewFlagSet(childEmulator, flag.ContinueOnError)
	agents := fs.Int("agents", 0, "agents to create")
	rooms := fs.Int("rooms", 1, "rooms per agent")
	if err := fs.Parse(args); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "bridge-bench-child-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ne, err := startNATS(ctx, dir, baselineWindow, log)
	if err != nil {
		return err
	}
	defer ne.close()
	emu, err := startEmu(bandemu.Options{}, max(*agents, 1), *rooms)
	if err != nil {
		return err
	}
	defer emu.close()
	info := platformInfo{URL: emu.url, NATS: ne.url(), Agents: emu.agents[:*agents]}
	if err := json.NewEncoder(stdout).Encode(info); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { // owned: ends at stdin EOF, which the parent guarantees
		_, _ = io.Copy(io.Discard, stdin)
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
	return nil
}

// bridgeSpecJSON is the bridge child's input.
type bridgeSpecJSON struct {
	Platform  platformInfo  `json:"platform"`
	Heartbeat time.Duration `json:"heartbeat"`
	Settle    time.Duration `json:"settle"`
	Timeout   time.Duration `json:"timeout"`
	// Profile, when set, is a path prefix: the child writes its heap
	// profile to Profile+".heap" and its goroutines to Profile+".goroutines"
	// when it reads its memory.
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
// platform child, waits until every connection finished its first catch-up
// (its gap_filled lifecycle event is stored), lets it idle for Settle with
// heartbeats running, then prints its memory as a bridgeResult.
func bridgeChild(ctx context.Context, stdin io.Reader, stdout io.Writer, log zerolog.Logger) error {
	var spec bridgeSpecJSON
	if err := json.NewDecoder(bufio.NewReader(stdin)).Decode(&spec); err != nil {
		return fmt.Errorf("spec: %w", err)
	}
	n := len(spec.Platform.Agents)
	res := bridgeResult{Conns: n, FileLimit: fileLimit(), Before: memSnapshot()}
	ctx, cancel := context.WithTimeout(ctx, spec.Timeout)
	defer cancel()
	start := time.Now()
	b, err := startBridge(ctx, bridgeSpec{
		emuURL: spec.Platform.URL, natsURL: spec.Platform.NATS, agents: spec.Platform.Agents, log: log,
		heartbeat: spec.Heartbeat,
	})
	if err != nil {
		return err
	}
	defer func() {
		stopped := make(chan struct{})
		go func() { // owned: bounded by the wait below; the process exits after
			_ = b.stop()
			close(stopped)
		}()
		select {
		case <-stopped:
		case <-time.After(10 * time.Second):
		}
	}()
	if n > 0 {
		obs, err := newObserver(ctx, spec.Platform.NATS)
		if err != nil {
			return err
		}
		defer obs.close()
		if err := waitSubjects(ctx, obs, "bridge.sys.band.*.gap_filled", n); err != nil {
			return fmt.Errorf("connections: %w", err)
		}
	}
	res.ConnectSec = time.Since(start).Seconds()
	select {
	case <-time.After(spec.Settle):
	case <-ctx.Done():
		return ctx.Err()
	}
	res.After = memSnapshot()
	if spec.Profile != "" {
		if err := writeProfiles(spec.Profile); err != nil {
			return err
		}
	}
	return json.NewEncoder(stdout).Encode(res)
}

// waitSubjects polls until at least n distinct subjects match filter.
func waitSubjects(ctx context.Context, obs *observer, filter string, n int) error {
	got := 0
	for {
		_, subs, err := obs.count(ctx, filter)
		if err == nil {
			got = subs
			if subs >= n {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return errors.Join(fmt.Errorf("%d of %d connected", got, n), ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

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
