package bridge

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/bridgeworks/bridge/ackflow"
	"github.com/bridgeworks/bridge/cmdexec"
	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/dispatch"
)

// startReturnPath runs a connection's command executor (durable commands
// and RPC) and its managed-dispatch rule, if any.
func (b *Bridge) startReturnPath(ctx context.Context, g *errgroup.Group, js jetstream.JetStream, nc *nats.Conn, m *metrics, ce connEntry, c connector.Connector, log zerolog.Logger) error {
	ex, ok := c.(connector.Executor)
	if !ok {
		log.Info().Msg("platform takes no commands")
		return nil
	}
	n := b.cfg.NATS
	exec, err := cmdexec.New(cmdexec.Options{
		JS: js, NC: nc, Prefix: n.Prefix, Platform: ce.factory.Platform, Conn: ce.cfg.Name, Exec: ex,
		MaxParallelRooms: ce.cfg.MaxParallelRooms,
		Policy:           ackflow.Policy{MaxAttempts: ce.cfg.CommandMaxAttempts, BackoffMax: ce.cfg.CommandBackoffMax.D()},
		ExecutedTTL:      n.DuplicateWindow.D(), Replicas: n.Replicas, DrainTimeout: b.opts.ShutdownTimeout,
		Log: log, Registerer: m.reg,
	})
	if err != nil {
		return fmt.Errorf("connection %q: %w", ce.cfg.Name, err)
	}
	g.Go(func() error { return exec.Run(ctx) })
	for _, r := range b.cfg.Dispatch {
		if r.Connection != ce.cfg.Name {
			continue
		}
		d, err := dispatch.New(dispatch.Options{
			JS: js, NC: nc, Prefix: n.Prefix, Platform: ce.factory.Platform, Conn: ce.cfg.Name, Exec: exec,
			Events: r.Events, Timeout: r.Timeout.D(), MaxAttempts: r.MaxAttempts, MaxInFlightPerRoom: r.MaxInFlightPerRoom,
			BackoffInitial: r.BackoffInitial.D(), BackoffMax: r.BackoffMax.D(), DrainTimeout: b.opts.ShutdownTimeout,
			Log: log, Registerer: m.reg,
		})
		if err != nil {
			return fmt.Errorf("dispatch for %q: %w", ce.cfg.Name, err)
		}
		g.Go(func() error { return d.Run(ctx) })
	}
	return nil
}
