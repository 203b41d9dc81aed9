package natsbus

import (
	"context"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// restartMinFree is the free space the store dir's disk needs before
// KeepJetStream restarts JetStream after a failed write.
const restartMinFree = 4 << 20

// KeepJetStream brings the embedded server's JetStream back after its disk
// was full, checking every interval until ctx ends.
//
// nats-server meets a full store in two ways. Reaching MaxStore refuses
// publishes with "insufficient resources" and takes them again as soon as
// space is freed (a purge, messages ageing out): nothing to do here. A write
// the disk itself refuses (no space left on a volume shared with other files)
// marks that stream's file store failed, and it then refuses every later
// write until it is loaded again, which without help means a server restart.
// After such a failure, once the disk has restartMinFree again (or whenever
// JetStream is found off), KeepJetStream shuts JetStream down and enables it
// again in place: streams, consumers and KV buckets are loaded from disk,
// clients stay connected (their JetStream calls fail for that moment and are
// retried), and a default MaxStore is measured anew.
func (e *Embedded) KeepJetStream(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		failed, off := e.writeFailed.Load(), !e.Server.JetStreamEnabled()
		if !failed && !off {
			continue
		}
		if free := freeSpace(e.opts.StoreDir); !off && free >= 0 && free < restartMinFree {
			continue // still full: a restart would fail the same way
		}
		e.restartJetStream(failed, off)
	}
}

func (e *Embedded) restartJetStream(failed, off bool) {
	e.log.Warn().Bool("write_failed", failed).Bool("jetstream_off", off).Str("store_dir", e.opts.StoreDir).
		Msg("restarting JetStream to recover its store")
	e.writeFailed.Store(false)
	if !off {
		if err := e.Server.ShutdownJetStream(); err != nil {
			e.log.Error().Err(err).Msg("JetStream shutdown")
			e.writeFailed.Store(true)
			return
		}
	}
	// MaxMemory 0 takes nats-server's default, as at start.
	if err := e.Server.EnableJetStream(&server.JetStreamConfig{StoreDir: e.opts.StoreDir, MaxStore: e.opts.MaxStore}); err != nil {
		e.log.Error().Err(err).Msg("JetStream restart failed; trying again")
		return
	}
	e.log.Info().Msg("JetStream restarted")
}
