package polyai_test

import (
	"context"
	"testing"
	"time"

	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/connector/conntest"
	"github.com/bridgeworks/bridge/connector/polyai"
	"github.com/bridgeworks/bridge/emulator/polyaiemu"
	"github.com/bridgeworks/bridge/internal/testutil"
	"github.com/bridgeworks/bridge/retry"
)

// heldOpen starts a connector holding n sessions the emulator created
// (stored as a restarted bridge finds them) with deps, and waits until
// every socket is open.
func heldOpen(t *testing.T, emu *polyaiemu.Server, url string, n int, extra connector.Settings, deps connector.Deps) []string {
	t.Helper()
	st := conntest.NewMemState()
	ids := make([]string, n)
	for i := range ids {
		s, err := emu.CreateSession(polyaiemu.SessionOptions{})
		if err != nil {
			t.Fatal(err)
		}
		hold(t, st, s)
		ids[i] = s.ID
	}
	settings := connector.Settings{"manual_join": true}
	for k, v := range extra {
		settings[k] = v
	}
	cfg := polyai.ConfigFor(url, emu.Host(), emu.ConnectorToken(), settings)
	cfg.Reconnect = retry.Policy{Initial: 5 * time.Millisecond, Max: 50 * time.Millisecond}
	deps.Log, deps.State = testutil.Logger(t), st
	c, err := polyai.New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Connect(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	drain(t, c)
	testutil.Eventually(t, 60*time.Second, func() bool { return emu.Connections() == n }, "%d sockets open", n)
	return ids
}

// TestDialsPaced: the sockets of many sessions, at start and when they
// all drop at once, are dialled at the pace of the process's dial
// limiter, never all in the same second.
func TestDialsPaced(t *testing.T) {
	t.Parallel()
	const n, rate, burst = 40, 8, 2
	emu, url := startEmu(t, polyaiemu.Options{})
	heldOpen(t, emu, url, n, nil, connector.Deps{Dials: connector.NewDialLimiter(rate, burst)})
	emu.DropSockets("")
	testutil.Eventually(t, 60*time.Second, func() bool { return emu.DialStats().Total >= 2*n && emu.Connections() == n }, "every socket redialled")
	st := emu.DialStats()
	t.Logf("%d dials from %s to %s; busiest second: %d, busiest 3 s: %d", st.Total, st.First.Format(time.StampMilli),
		st.Last.Format(time.StampMilli), st.MaxPerSecond, st.MaxPer3Seconds)
	// At most burst + 3×rate dials in any 3 s, +3 for arrival jitter at
	// the window's edges; unpaced, all n arrive at once, twice.
	if limit := burst + 3*rate + 3; st.MaxPer3Seconds > limit {
		t.Fatalf("the emulator saw %d dials in three seconds; the limiter allows %d + 3×%d (+3)", st.MaxPer3Seconds, burst, rate)
	}
}

// TestHeartbeatPhasesSpread: every session's first heartbeat after its
// socket opens comes at a random point of the interval, so the
// heartbeats of sessions opened together do not fire together: their
// phases spread over the interval.
func TestHeartbeatPhasesSpread(t *testing.T) {
	t.Parallel()
	const n, every, bins = 100, time.Second, 10
	emu, url := startEmu(t, polyaiemu.Options{})
	ids := heldOpen(t, emu, url, n, connector.Settings{"heartbeat_interval": every.String()}, connector.Deps{})
	testutil.Eventually(t, 10*every, func() bool {
		for _, id := range ids {
			if s, _ := emu.Session(id); s.FirstHeartbeat.IsZero() {
				return false
			}
		}
		return true
	}, "a heartbeat from every session")
	var hist [bins]int
	for _, id := range ids {
		s, _ := emu.Session(id)
		phase := s.FirstHeartbeat.Sub(s.FirstOpen) % every
		hist[int(phase*bins/every)]++
	}
	t.Logf("first heartbeats per tenth of the interval after the socket opened: %v", hist)
	// Uniform over [every/10, every): about n/9 a tenth. Fixed, all n
	// fall in one.
	for i, c := range hist {
		if c > n/3 {
			t.Errorf("%d of %d sessions sent their first heartbeat in tenth %d of the interval: not spread", c, n, i)
		}
	}
}
