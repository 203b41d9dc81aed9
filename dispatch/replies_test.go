package dispatch

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/bridgeworks/bridge/internal/testutil"
	"github.com/bridgeworks/bridge/natsbus"
)

// syncBuffer is a log sink tests can read while the dispatcher writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) count(sub string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Count(s.b.String(), sub)
}

// A worker that floods its attempt with "processing" replies, then answers
// processed, then goes on with both: the final reply is taken (no timeout, no
// second attempt), and the extra replies make one log line at most.
func TestReplyFloodKeepsTheFinalReply(t *testing.T) {
	t.Parallel()
	s := testutil.NATS(t)
	ctx := testutil.Context(t, 60*time.Second)
	if err := natsbus.EnsureStreams(ctx, s.JS, natsbus.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	worker, err := nats.Connect(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer worker.Close()
	var requests atomic.Int32
	sub, err := worker.Subscribe("bridge.work.>", func(m *nats.Msg) {
		requests.Add(1)
		for range 5000 {
			_ = worker.Publish(m.Reply, []byte(`{"status":"processing"}`))
		}
		_ = worker.Publish(m.Reply, []byte(`{"status":"processed"}`))
		for range 2000 {
			_ = worker.Publish(m.Reply, []byte(`{"status":"processing"}`))
		}
		for range 50 {
			_ = worker.Publish(m.Reply, []byte(`{"status":"processed"}`))
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := worker.Flush(); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	d, err := New(Options{JS: s.JS, NC: s.NC, Platform: "band", Conn: "c1", Exec: okDoer{}, Events: []string{"message_created"}, Start: "all",
		Timeout: 3 * time.Second, MaxAttempts: 1, Log: zerolog.New(logs)})
	if err != nil {
		t.Fatal(err)
	}
	publishEvent(t, s.JS, "m1")
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = d.Run(rctx); close(done) }()
	defer func() { cancel(); <-done }()

	testutil.Eventually(t, 20*time.Second, func() bool {
		info, err := s.JS.Consumer(ctx, "BRIDGE_EVENTS", ConsumerName("c1"))
		if err != nil {
			return false
		}
		ci, err := info.Info(ctx)
		return err == nil && ci.AckFloor.Stream == 1
	}, "event settled")
	if n := logs.count("attempt did not succeed"); n != 0 {
		t.Fatalf("%d attempts failed; the processed reply was lost behind processing replies", n)
	}
	if n := logs.count("dead"); n != 0 {
		t.Fatal("the event was dead-lettered")
	}
	if n := requests.Load(); n != 1 {
		t.Fatalf("worker got %d work requests, want 1", n)
	}
	if n := logs.count("extra replies dropped") + logs.count("reply dropped"); n > 1 {
		t.Fatalf("%d log lines about extra replies, want at most 1", n)
	}
}
