package bridge

import (
	"fmt"
	"testing"
	"time"

	"github.com/bridgeworks/bridge/emulator/bandemu"
	"github.com/bridgeworks/bridge/internal/testutil"
)

// Two replicas with the same config share one NATS: only one holds the
// platform connection; when it stops, the other takes over.
func TestLeaseOneReplicaHoldsTheConnection(t *testing.T) {
	t.Parallel()
	srv := testutil.NATS(t)
	env := newBandEnv(t, bandemu.Options{})
	room := env.emu.AddRoom("ops", env.user.ID)
	spec := func(owner string) bridgeSpec {
		s := env.spec
		s.config = fmt.Sprintf("[lease]\nttl = \"1s\"\nowner = %q\n", owner) + s.config
		s.natsURL = srv.URL
		return s
	}
	a := runBridge(t, spec("replica-a"))
	waitState(t, a, StateConnected)
	b := runBridge(t, spec("replica-b"))
	waitState(t, b, StateStandby)
	if n := env.emu.Connections(); n != 1 {
		t.Fatalf("%d platform sockets, want 1", n)
	}
	a.stop()
	waitState(t, b, StateConnected)
	m := env.emu.PostUserMessage(room.ID, env.user.ID, "@Bridge Bot after failover")
	testutil.Eventually(t, 20*time.Second, func() bool {
		_, count := storedMessages(t, b.js)
		return count[m.ID] == 1
	}, "message stored by the new holder")
}
