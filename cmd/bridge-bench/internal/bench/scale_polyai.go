package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/bridgeworks/bridge/bridge"
	"github.com/bridgeworks/bridge/config"
	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/connector/polyai"
	"github.com/bridgeworks/bridge/emulator/polyaiemu"
	"github.com/bridgeworks/bridge/subjects"
)

// The PolyAI scale scenario, like scale, runs the platform side (the
// PolyAI emulator and NATS) in one child and the bridge in another.
const (
	childPolyAIPlatform = "child-polyai-platform"
	childPolyAIBridge   = "child-polyai-bridge"
)

// polyConn is the connection holding every session of the scenario.
const polyConn = "poly-scale"

// polyPlatformInfo is what the PolyAI platform child prints once ready.
type polyPlatformInfo struct {
	URL      string `json:"url"`
	NATS     string `json:"nats"`
	Host     string `json:"host"`
	Token    string `json:"token"`
	Sessions int    `json:"sessions"`
}

// polyPlatformStats is what it prints at stdin EOF: what the emulator saw.
type polyPlatformStats struct {
	Dials      polyaiemu.ArrivalStats `json:"dials"`
	Heartbeats polyaiemu.ArrivalStats `json:"heartbeats"`
	Sockets    int                    `json:"sockets"`
}

// polyBridgeSpec is the PolyAI bridge child's input.
type polyBridgeSpec struct {
	Platform  polyPlatformInfo `json:"platform"`
	Heartbeat time.Duration    `json:"heartbeat"`
	Settle    time.Duration    `json:"settle"`
	Timeout   time.Duration    `json:"timeout"`
}

// scalePolyAI measures the bridge's memory and goroutines per idle PolyAI
// session, heartbeats running. For each size N (and N = 0, the fixed
// cost) a platform child creates N sessions on the emulator and stores
// them in the state bucket as a bridge holding them leaves them; a fresh
// bridge child then resumes them all (dials paced as in production),
// waits until every session's SESSION_START is stored, idles for the
// settle time (at least one heartbeat interval) and reports its memory.
// Per session = (M(N) − M(0)) / N. The emulator reports the busiest
// second of heartbeats: spread phases keep it near N per interval.
func (e *Env) scalePolyAI(ctx context.Context, run int) error {
	settle := max(e.plan.ScaleSettle, e.plan.PolyAIHeartbeat+time.Second)
	zero, _, err := e.scalePolyAIOnce(ctx, 0, settle)
	if err != nil {
		return fmt.Errorf("0 sessions: %w", err)
	}
	e.logf("   bridge with 0 sessions: RSS %d KiB, heap %d KiB, stack %d KiB, %d goroutines",
		zero.After.RSSKiB, zero.After.HeapKiB, zero.After.StackKiB, zero.After.Goroutines)
	for _, n := range e.plan.PolyAIScaleSizes {
		r, ps, err := e.scalePolyAIOnce(ctx, n, settle)
		if err != nil {
			return fmt.Errorf("%d sessions: %w", n, err)
		}
		per := func(a, b int64) float64 { return float64(a-b) / float64(n) }
		rss := per(r.After.RSSKiB, zero.After.RSSKiB)
		heap := per(r.After.HeapKiB+r.After.StackKiB, zero.After.HeapKiB+zero.After.StackKiB)
		gor := float64(r.After.Goroutines-zero.After.Goroutines) / float64(n)
		e.logf("   %5d idle sessions: resumed in %.1f s; RSS %d KiB (%.1f KiB/session), heap+stack %.1f KiB/session, %.2f goroutines/session, %d fds; busiest second: %d dials, %d heartbeats (%d in all)",
			n, r.ConnectSec, r.After.RSSKiB, rss, heap, gor, r.After.FDs, ps.Dials.MaxPerSecond, ps.Heartbeats.MaxPerSecond, ps.Heartbeats.Total)
		name := fmt.Sprintf("%d idle PolyAI sessions", n)
		e.c.add("scale_polyai", name+": RSS per session", "KiB", rss)
		e.c.add("scale_polyai", name+": Go heap+stack per session", "KiB", heap)
		e.c.add("scale_polyai", name+": goroutines per session", "count", gor)
		e.c.add("scale_polyai", name+": file descriptors per session", "count", float64(r.After.FDs-zero.After.FDs)/float64(n))
		e.c.add("scale_polyai", name+": time until all resumed", "s", r.ConnectSec)
		e.c.add("scale_polyai", name+": busiest second of socket dials", "count", float64(ps.Dials.MaxPerSecond))
		e.c.add("scale_polyai", name+": busiest second of heartbeats", "count", float64(ps.Heartbeats.MaxPerSecond))
	}
	e.note("scale_polyai: sessions resumed from the state bucket at start (manual_join, no agent), dials paced at [dial] rate 1000, burst 100; heartbeat every %s; memory read after %s idle, after four GCs with freed memory returned to the OS; the bridge runs alone in its process with NATS and the PolyAI emulator in another.",
		e.plan.PolyAIHeartbeat, settle)
	return nil
}

// scalePolyAIOnce runs a platform child with n sessions and a bridge child
// resuming them; it returns the bridge's result and the emulator's counts.
func (e *Env) scalePolyAIOnce(ctx context.Context, n int, settle time.Duration) (bridgeResult, polyPlatformStats, error) {
	ctx, cancel := context.WithTimeout(ctx, 4*time.Minute)
	defer cancel()
	plat := exec.CommandContext(ctx, e.self, childPolyAIPlatform, "-sessions", strconv.Itoa(n))
	plat.Stderr = os.Stderr
	platIn, err := plat.StdinPipe()
	if err != nil {
		return bridgeResult{}, polyPlatformStats{}, err
	}
	platOut, err := plat.StdoutPipe()
	if err != nil {
		return bridgeResult{}, polyPlatformStats{}, err
	}
	if err := plat.Start(); err != nil {
		return bridgeResult{}, polyPlatformStats{}, fmt.Errorf("platform child: %w", err)
	}
	waited := false
	defer func() {
		if !waited {
			platIn.Close()
			_ = plat.Wait()
		}
	}()
	dec := json.NewDecoder(bufio.NewReader(platOut))
	var info polyPlatformInfo
	if err := dec.Decode(&info); err != nil {
		return bridgeResult{}, polyPlatformStats{}, fmt.Errorf("platform child: %w", err)
	}
	spec, _ := json.Marshal(polyBridgeSpec{Platform: info, Heartbeat: e.plan.PolyAIHeartbeat, Settle: settle, Timeout: 200 * time.Second})
	br := exec.CommandContext(ctx, e.self, childPolyAIBridge)
	br.Stderr = os.Stderr
	br.Stdin = bytes.NewReader(spec)
	out, err := br.Output()
	if err != nil {
		return bridgeResult{}, polyPlatformStats{}, fmt.Errorf("bridge child: %w", err)
	}
	var res bridgeResult
	if err := json.Unmarshal(out, &res); err != nil {
		return bridgeResult{}, polyPlatformStats{}, fmt.Errorf("bridge child output: %w", err)
	}
	platIn.Close() // the child prints its counts and exits
	var ps polyPlatformStats
	derr := dec.Decode(&ps)
	waited = true
	if werr := plat.Wait(); derr == nil {
		derr = werr
	}
	if derr != nil {
		return bridgeResult{}, polyPlatformStats{}, fmt.Errorf("platform child counts: %w", derr)
	}
	return res, ps, nil
}

// polyPlatformChild serves the PolyAI emulator with -sessions sessions and
// a NATS server whose state bucket holds them, prints a polyPlatformInfo
// line, and at stdin EOF prints a polyPlatformStats line and stops.
func polyPlatformChild(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer, log zerolog.Logger) error {
	fs := flag.NewFlagSet(childPolyAIPlatform, flag.ContinueOnError)
	sessions := fs.Int("sessions", 0, "sessions to create and store")
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
	emu := polyaiemu.New(polyaiemu.Options{MaxSocketsPerSession: 1, MaxSessions: *sessions + 10, MaxTokens: *sessions + 10})
	url, err := emu.Start()
	if err != nil {
		return err
	}
	defer emu.Close()
	if err := storeSessions(ctx, ne.js, emu, *sessions); err != nil {
		return err
	}
	info := polyPlatformInfo{URL: url, NATS: ne.url(), Host: emu.Host(), Token: emu.ConnectorToken(), Sessions: *sessions}
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
		return ctx.Err()
	}
	return json.NewEncoder(stdout).Encode(polyPlatformStats{Dials: emu.DialStats(), Heartbeats: emu.HeartbeatStats(), Sockets: emu.Connections()})
}

// storeSessions creates n sessions on emu and writes each into the state
// bucket as the polyai connector keeps an open session (its record under
// "<conn>.session.<id>"), so the bridge resumes them at start.
func storeSessions(ctx context.Context, js jetstream.JetStream, emu *polyaiemu.Server, n int) error {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bridge.StateBucket(subjects.DefaultPrefix),
		History: 1, Storage: jetstream.FileStorage})
	if err != nil {
		return fmt.Errorf("state bucket: %w", err)
	}
	now := time.Now().UTC()
	for range n {
		s, err := emu.CreateSession(polyaiemu.SessionOptions{})
		if err != nil {
			return err
		}
		rec, _ := json.Marshal(map[string]any{"id": s.ID, "token": s.Token, "created": now})
		if _, err := kv.Put(ctx, polyConn+".session."+s.ID, rec); err != nil {
			return fmt.Errorf("store session: %w", err)
		}
	}
	return nil
}

// polyBridgeChild runs a bridge with one polyai connection against the
// platform child, waits until every stored session's SESSION_START is
// stored again (each socket open and replayed), idles for Settle with
// heartbeats running, then prints its memory as a bridgeResult.
func polyBridgeChild(ctx context.Context, stdin io.Reader, stdout io.Writer, log zerolog.Logger) error {
	var spec polyBridgeSpec
	if err := json.NewDecoder(bufio.NewReader(stdin)).Decode(&spec); err != nil {
		return fmt.Errorf("spec: %w", err)
	}
	n := spec.Platform.Sessions
	res := bridgeResult{Conns: n, FileLimit: fileLimit(), Before: memSnapshot()}
	ctx, cancel := context.WithTimeout(ctx, spec.Timeout)
	defer cancel()
	// Subscribed before the bridge starts, so no session_start is missed.
	started, err := watchSubjects(spec.Platform.NATS, "bridge.evt.polyai."+polyConn+".*.session_start", n)
	if err != nil {
		return err
	}
	defer started.close()
	start := time.Now()
	b, err := startPolyBridge(ctx, spec, log)
	if err != nil {
		return err
	}
	defer b.stopWithin(10 * time.Second)
	select {
	case <-started.done:
	case <-ctx.Done():
		return fmt.Errorf("sessions: %d of %d started: %w", started.count(), n, ctx.Err())
	}
	res.ConnectSec = time.Since(start).Seconds()
	select {
	case <-time.After(spec.Settle):
	case <-ctx.Done():
		return ctx.Err()
	}
	res.After = memSnapshot()
	return json.NewEncoder(stdout).Encode(res)
}

// startPolyBridge starts bridge.Run with one polyai connection (manual
// join, the heartbeat of the spec, dials paced as in the Band scale run)
// and waits for OnReady.
func startPolyBridge(ctx context.Context, spec polyBridgeSpec, log zerolog.Logger) (*bridgeRun, error) {
	cfg := &config.Config{}
	cfg.Log.Level = "error"
	cfg.NATS.URL = spec.Platform.NATS
	cfg.HTTP.Listen = "none"
	cfg.Connection = []config.Connection{{Name: polyConn, Platform: polyai.Platform, Settings: map[string]any{
		"base_url": spec.Platform.URL, "host": spec.Platform.Host, "connector_token_env": "POLYAI_CONNECTOR_TOKEN",
		"manual_join": true, "heartbeat_interval": spec.Heartbeat.String(),
	}}}
	cfg.Dial.Rate, cfg.Dial.Burst = 1000, 100
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return runUntilReady(ctx, cfg, bridge.Options{
		Log:       log,
		Registry:  connector.Registry{polyai.Platform: polyai.Factory()},
		LookupEnv: func(k string) (string, bool) { return spec.Platform.Token, k == "POLYAI_CONNECTOR_TOKEN" },
	}, 0)
}
