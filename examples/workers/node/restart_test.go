package node

import (
	"encoding/json"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bridgeworks/bridge/internal/testutil"
	"github.com/bridgeworks/bridge/internal/testutil/e2e"
	"github.com/bridgeworks/bridge/natsbus"
	"github.com/bridgeworks/bridge/subjects"
)

// TestNodeWorkerSurvivesNATSRestart stops the NATS server under a running
// worker.mjs and starts a new one on the same address: the worker
// reconnects and answers work requests again, and it still exits cleanly
// on SIGTERM (checked by startNode's cleanup).
func TestNodeWorkerSurvivesNATSRestart(t *testing.T) {
	t.Parallel()
	dir, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	node := e2e.Node(t, dir, "@nats-io/transport-node")
	log := testutil.Logger(t)
	srv, err := natsbus.StartEmbedded(natsbus.EmbeddedOptions{Listen: "127.0.0.1:0", StoreDir: t.TempDir()}, log)
	if err != nil {
		t.Fatal(err)
	}
	addr := srv.Addr().(*net.TCPAddr).String()
	url := "nats://" + addr
	w := startNode(t, node, dir, url, "restart-bot")

	srv.Shutdown()
	srv.WaitForShutdown()
	srv2, err := natsbus.StartEmbedded(natsbus.EmbeddedOptions{Listen: addr, StoreDir: t.TempDir()}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		srv2.Shutdown()
		srv2.WaitForShutdown()
	})
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()

	ev := subjects.NewEvent("band", "restart-bot", "room-1", "message_created", "m1", time.Now(),
		json.RawMessage(`{"id":"m1","content":"hi","sender_id":"u1","sender_type":"User"}`))
	body := ev.AppendJSON(nil)
	subj := "bridge.work.band.restart-bot.room-1.message_created"
	var reply subjects.WorkReply
	testutil.Eventually(t, 45*time.Second, func() bool {
		m, err := nc.Request(subj, body, time.Second)
		if err != nil {
			return false
		}
		reply, err = subjects.DecodeWorkReply(m.Data)
		return err == nil
	}, "worker.mjs does not answer after the NATS restart\n%s", w.output())
	if reply.Status != subjects.WorkProcessing && reply.Status != subjects.WorkProcessed {
		t.Fatalf("reply status %q", reply.Status)
	}
}
