package bench

import (
	"cmp"
	"context"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/bridgeworks/bridge/bridge"
	"github.com/bridgeworks/bridge/config"
	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/connector/band"
)

// bridgeSpec says how to run a bridge against an emulator.
type bridgeSpec struct {
	emuURL   string
	agents   []agentRoom
	storeDir string // embedded NATS store; ignored when natsURL is set
	natsURL  string // "" starts the bridge's own embedded server
	http     bool   // serve /status and /metrics on a random port
	band     band.Options
	// heartbeat is each connection's settings.heartbeat_interval; 0 keeps
	// Band's default (30s).
	heartbeat time.Duration
	log       zerolog.Logger
	// dispatch, when set, is a [[dispatch]] rule for the first connection
	// (its Connection is filled in).
	dispatch *config.Dispatch
	// readyTimeout bounds the wait for OnReady, which comes after every
	// connection was started; default 30s.
	readyTimeout time.Duration
	// startGC is bridge.Options.StartGCPercent: the bridge program's
	// collector target while connections start (the scale scenario's
	// bridge child runs as the program does; in-process scenarios keep the
	// runtime's target, shared with their baselines).
	startGC int
}

// connName is the bridge connection name of agent i.
func connName(i int) string { return fmt.Sprintf("agent-%05d", i) }

// bridgeRun is a running bridge.
type bridgeRun struct {
	info   bridge.Info
	cancel context.CancelFunc
	done   chan error
}

// startBridge builds the configuration (one [[connection]] per agent),
// starts bridge.Run and waits for OnReady. Connections keep connecting in
// the background after it returns.
func startBridge(ctx context.Context, spec bridgeSpec) (*bridgeRun, error) {
	cfg := &config.Config{}
	cfg.Log.Level = "error"
	cfg.NATS.URL = spec.natsURL
	cfg.NATS.Embedded.Listen = "127.0.0.1:0" // observers connect over TCP
	cfg.NATS.Embedded.StoreDir = spec.storeDir
	cfg.HTTP.Listen = "none"
	if spec.http {
		cfg.HTTP.Listen = "127.0.0.1:0"
	}
	env := make(map[string]string, len(spec.agents))
	for i, a := range spec.agents {
		keyEnv := fmt.Sprintf("BENCH_KEY_%05d", i)
		env[keyEnv] = a.Key
		settings := map[string]any{"base_url": spec.emuURL, "agent_id": a.AgentID, "api_key_env": keyEnv}
		if spec.heartbeat > 0 {
			settings["heartbeat_interval"] = spec.heartbeat.String()
		}
		cfg.Connection = append(cfg.Connection, config.Connection{Name: connName(i), Platform: "band", Settings: settings})
	}
	if spec.dispatch != nil && len(spec.agents) > 0 {
		d := *spec.dispatch
		d.Connection = connName(0)
		cfg.Dispatch = append(cfg.Dispatch, d)
	}
	// Sockets are paced as in production, at a rate this machine's
	// emulator takes: 10,000 connections dial in 10 s.
	cfg.Dial.Rate, cfg.Dial.Burst = 1000, 100
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	opts := bridge.Options{
		Log:            spec.log,
		Registry:       connector.Registry{"band": band.Factory(false, spec.band)},
		LookupEnv:      func(k string) (string, bool) { v, ok := env[k]; return v, ok },
		StartGCPercent: spec.startGC,
	}
	return runUntilReady(ctx, cfg, opts, spec.readyTimeout)
}

// runUntilReady starts bridge.Run on cfg and waits for OnReady (within
// readyTimeout, default 30 s).
func runUntilReady(ctx context.Context, cfg *config.Config, opts bridge.Options, readyTimeout time.Duration) (*bridgeRun, error) {
	ready := make(chan bridge.Info, 1)
	opts.OnReady = func(i bridge.Info) { ready <- i }
	b, err := bridge.New(cfg, opts)
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r := &bridgeRun{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- b.Run(rctx) }() // owned: stop waits for it
	readyTimeout = cmp.Or(readyTimeout, 30*time.Second)
	select {
	case r.info = <-ready:
		return r, nil
	case err := <-r.done:
		cancel()
		return nil, fmt.Errorf("bridge stopped before ready: %w", err)
	case <-ctx.Done():
		_ = r.stop()
		return nil, ctx.Err()
	case <-time.After(readyTimeout):
		_ = r.stop()
		return nil, fmt.Errorf("bridge not ready within %s", readyTimeout)
	}
}

// stopWithin stops the bridge, waiting for it at most d (a child process
// exits right after).
func (r *bridgeRun) stopWithin(d time.Duration) {
	stopped := make(chan struct{})
	go func() { // owned: bounded by the wait below; the process exits after
		_ = r.stop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(d):
	}
}

func (r *bridgeRun) stop() error {
	r.cancel()
	return <-r.done
}
