package main

import (
	"context"
	"log"
	"testing"

	"github.com/bridgeworks/bridge/emulator/bandemu"
	"github.com/bridgeworks/bridge/internal/testutil/e2e"
)

// TestDispatchWorker runs the worker against the Band emulator, the bridge
// with a dispatch rule and embedded NATS: every user message gets its echo
// on the platform, in each room's order, and ends processed.
func TestDispatchWorker(t *testing.T) {
	t.Parallel()
	s := e2e.Start(t, e2e.Options{Dispatch: true})
	startWorker(t, config{natsURL: s.NATSURL, prefix: "bridge", platform: "band", conn: e2e.Conn})

	ops, support := s.AddRoom("ops"), s.AddRoom("support")
	var posted []bandemu.Message
	for _, text := range []string{"hello", "how are you?", "bye"} {
		posted = append(posted, s.Post(ops.ID, "@Bridge Bot "+text), s.Post(support.ID, text+" from support"))
	}
	s.WaitEchoed(t, posted...)
}

func TestDispatchWorkerNeedsConn(t *testing.T) {
	t.Parallel()
	if err := run(t.Context(), config{natsURL: "nats://127.0.0.1:1"}, log.New(t.Output(), "", 0)); err == nil {
		t.Fatal("run without --conn succeeded")
	}
}

// startWorker runs the worker until the test ends.
func startWorker(t *testing.T, c config) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, c, log.New(t.Output(), "dispatch worker: ", 0)) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("worker: %v", err)
		}
	})
}
