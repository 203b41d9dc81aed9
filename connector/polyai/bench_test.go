package polyai_test

import (
	"context"
	"fmt"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/connector/conntest"
	"github.com/bridgeworks/bridge/connector/polyai"
	"github.com/bridgeworks/bridge/emulator/polyaiemu"
	"github.com/bridgeworks/bridge/retry"
)

// BenchmarkIdleSessions holds n idle sessions (sockets open, heartbeats
// running) and reports the memory and goroutines each one adds. The
// emulator runs in the same process, so the figures cover both ends of
// every socket: an upper bound of the connector's own cost.
func BenchmarkIdleSessions(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			if n > 1000 && testing.Short() {
				b.Skip("10,000 sockets: not in -short")
			}
			var lim syscall.Rlimit
			if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) == nil && lim.Cur < uint64(2*n+1000) {
				b.Skipf("%d sockets at both ends need %d open files; the limit is %d", n, 2*n+1000, lim.Cur)
			}
			for b.Loop() {
				idleSessions(b, n)
			}
		})
	}
}

func idleSessions(b *testing.B, n int) {
	emu := polyaiemu.New(polyaiemu.Options{MaxSocketsPerSession: 1})
	url, err := emu.Start()
	if err != nil {
		b.Fatal(err)
	}
	defer emu.Close()
	st := conntest.NewMemState()
	for range n {
		s, err := emu.CreateSession(polyaiemu.SessionOptions{})
		if err != nil {
			b.Fatal(err)
		}
		hold(b, st, s)
	}
	cfg := polyai.ConfigFor(url, emu.Host(), emu.ConnectorToken(), connector.Settings{"manual_join": true})
	cfg.Reconnect = retry.Policy{Initial: 100 * time.Millisecond, Max: time.Second}
	c, err := polyai.New(cfg, connector.Deps{Log: zerolog.Nop(), State: st})
	if err != nil {
		b.Fatal(err)
	}
	before := memNow()
	g := runtime.NumGoroutine()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := c.Connect(ctx); err != nil {
		b.Fatal(err)
	}
	go func() { // drains the replays; ends at Close
		for {
			_, ack, err := c.Receive(ctx)
			if err != nil {
				return
			}
			ack(ctx, nil)
		}
	}()
	for emu.Connections() < n {
		if ctx.Err() != nil {
			b.Fatalf("%d of %d sockets open", emu.Connections(), n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Second) // replays handled, buffers settled
	after := memNow()
	b.ReportMetric(float64(after-before)/float64(n), "B/session")
	b.ReportMetric(float64(runtime.NumGoroutine()-g)/float64(n), "goroutines/session")
	if err := c.Close(ctx); err != nil {
		b.Fatal(err)
	}
}

// memNow is the heap and stack memory in use after a collection.
func memNow() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse + m.StackInuse
}
