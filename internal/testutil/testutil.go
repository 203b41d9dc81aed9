package testutil

import (
	"context"
	"io"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/bridgeworks/bridge/natsbus"
)

// Server is a running embedded nats-server with a client connection.
type Server struct {
	Srv *server.Server
	NC  *nats.Conn
	JS  jetstream.JetStream
	URL string // nats://127.0.0.1:port
}

// NATS starts a fresh nats-server (JetStream, file store in t.TempDir(),
// random loopback port) and connects to it. Both stop at test cleanup.
// A fresh server per test avoids nats-server's "error creating store" after
// a stream is deleted and recreated.
func NATS(t testing.TB) *Server {
	t.Helper()
	return NATSWith(t, natsbus.EmbeddedOptions{})
}

// NATSWith is [NATS] with server options of the test's own (such as a small
// MaxPayload); Listen and StoreDir are filled in when empty.
func NATSWith(t testing.TB, o natsbus.EmbeddedOptions) *Server {
	t.Helper()
	if o.Listen == "" {
		o.Listen = "127.0.0.1:0"
	}
	if o.StoreDir == "" {
		o.StoreDir = t.TempDir()
	}
	srv, err := natsbus.StartEmbedded(o, Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return &Server{Srv: srv.Server, NC: nc, JS: js, URL: srv.ClientURL()}
}

// Logger returns a zerolog logger for tests: silent unless BRIDGE_TEST_LOG=1.
func Logger(t testing.TB) zerolog.Logger {
	if os.Getenv("BRIDGE_TEST_LOG") == "" {
		return zerolog.New(io.Discard)
	}
	return zerolog.New(zerolog.NewTestWriter(t)).With().Timestamp().Logger()
}

// Context returns a context that ends at test cleanup or after d.
func Context(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// Eventually polls cond every few milliseconds until it returns true, and
// fails the test with msg if it has not by d.
func Eventually(t testing.TB, d time.Duration, cond func() bool, msg string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(d)
	wait := time.Millisecond
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not true within %s: "+msg, append([]any{d}, args...)...)
		}
		time.Sleep(wait)
		wait = min(wait*2, 50*time.Millisecond)
	}
}

// Finishes runs f on n goroutines at once and returns, in order, when each
// call returned nil; a call's error fails t. For rate checks of a shared
// limiter.
func Finishes(t testing.TB, n int, f func() error) []time.Time {
	t.Helper()
	var mu sync.Mutex
	var at []time.Time
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			if err := f(); err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			at = append(at, time.Now())
			mu.Unlock()
		})
	}
	wg.Wait()
	slices.SortFunc(at, time.Time.Compare)
	return at
}
