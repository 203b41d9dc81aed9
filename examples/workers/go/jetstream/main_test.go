package main

import (
	"context"
	"log"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bridgeworks/bridge/emulator/bandemu"
	"github.com/bridgeworks/bridge/internal/testutil"
	"github.com/bridgeworks/bridge/internal/testutil/e2e"
)

// TestJetStreamWorker runs the worker against the Band emulator, the bridge
// (no dispatch rule) and embedded NATS: every user message gets its echo
// on the platform, in each room's order, and ends processed.
func TestJetStreamWorker(t *testing.T) {
	t.Parallel()
	s := e2e.Start(t, e2e.Options{})
	startWorker(t, config{natsURL: s.NATSURL, prefix: "bridge", platform: "band", conn: e2e.Conn})

	ops, support := s.AddRoom("ops"), s.AddRoom("support")
	var posted []bandemu.Message
	for _, text := range []string{"hello", "how are you?", "bye"} {
		posted = append(posted, s.Post(ops.ID, "@Bridge Bot "+text), s.Post(support.ID, text+" from support"))
	}
	s.WaitEchoed(t, posted...)
}

func TestJetStreamWorkerNeedsConn(t *testing.T) {
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
	go func() { done <- run(ctx, c, log.New(t.Output(), "jetstream worker: ", 0)) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("worker: %v", err)
		}
	})
}

// TestJetStreamWorkerRedeliveryAnswersOnce hands the worker an event it has
// already answered, as after a crash between its PubAcks and its ack: the
// commands it publishes again carry the same Nats-Msg-Id and are dropped.
func TestJetStreamWorkerRedeliveryAnswersOnce(t *testing.T) {
	t.Parallel()
	s := e2e.Start(t, e2e.Options{})
	startWorker(t, config{natsURL: s.NATSURL, prefix: "bridge", platform: "band", conn: e2e.Conn})
	room := s.AddRoom("ops")
	first := s.Post(room.ID, "first")
	s.WaitEchoed(t, first)

	nc, err := nats.Connect(s.NATSURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := testutil.Context(t, 30*time.Second)
	cons, err := js.OrderedConsumer(ctx, "BRIDGE_EVENTS", jetstream.OrderedConsumerConfig{FilterSubjects: []string{"bridge.evt.band.agent.*.message_created"}})
	if err != nil {
		t.Fatal(err)
	}
	again, err := cons.Next(jetstream.FetchContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	handle(ctx, js, "bridge", again, log.New(t.Output(), "redelivered: ", 0))

	// Commands run in room order: had the replay gone through, its echo
	// would come before the second message's.
	second := s.Post(room.ID, "second")
	s.WaitEchoed(t, first, second)
}
