package band_test

import (
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/connector/band"
	"github.com/bridgeworks/bridge/emulator/bandemu"
	"github.com/bridgeworks/bridge/internal/testutil"
	"github.com/bridgeworks/bridge/subjects"
)

// TestIdleSessionHoldsOneGoroutine: a connected, caught-up and idle
// session holds one goroutine, the socket's reader; the heartbeat and the
// idle safety net run on timers, and the safety net still finds a message
// whose push was lost. Not parallel, so the goroutines counted are this
// session's.
func TestIdleSessionHoldsOneGoroutine(t *testing.T) {
	emu := bandemu.New(bandemu.Options{HeartbeatTimeout: 5 * time.Second})
	url, err := emu.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emu.Close)
	user := emu.AddUser("Idle Test")
	room := emu.AddRoom("idle", user.ID)
	f := band.Factory(false, band.Options{HeartbeatInterval: 100 * time.Millisecond, IdleResync: 200 * time.Millisecond})
	c, err := f.New(band.ConfigFor(url, emu.AgentID(), emu.APIKey()), connector.Deps{Log: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := testutil.Context(t, 30*time.Second)
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(testutil.Context(t, 10*time.Second)) })
	for {
		ev, _, err := c.Receive(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Lifecycle == subjects.LifecycleGapFilled {
			break
		}
	}

	waitOneGoroutine(t)

	// A message whose push is lost: the idle safety net finds it.
	emu.SetPushesEnabled(false)
	m := emu.PostUserMessage(room.ID, user.ID, "@Bridge Bot are you there?")
	for {
		ev, ack, err := c.Receive(ctx)
		if err != nil {
			t.Fatalf("the idle safety net did not find message %s: %v", m.ID, err)
		}
		if ev.Key == m.ID {
			if !ev.GapFill {
				t.Fatalf("message %s pushed although pushes are off", m.ID)
			}
			ack(ctx, nil)
			break
		}
	}
	waitOneGoroutine(t)
}

// waitOneGoroutine waits until the package's and the socket's code run on
// one goroutine, and fails with their stacks if that never happens.
func waitOneGoroutine(t *testing.T) {
	t.Helper()
	var got int
	var dump string
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, dump = sessionGoroutines()
		if got == 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got != 1 {
		t.Fatalf("an idle session holds %d goroutines, want 1 (the socket's reader):\n%s", got, dump)
	}
}

func sessionGoroutines() (int, string) {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var own []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "connector/band.(*session)") || strings.Contains(g, "internal/phoenix.(*") {
			own = append(own, g)
		}
	}
	return len(own), strings.Join(own, "\n\n")
}
