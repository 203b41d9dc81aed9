package main

import (
	"encoding/json"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bridgeworks/bridge/internal/testutil"
	"github.com/bridgeworks/bridge/natsbus"
	"github.com/bridgeworks/bridge/subjects"
)

// TestDispatchWorkerSurvivesNATSRestart stops the NATS server under the
// worker and starts a new one on the same address: the worker reconnects
// and answers work requests again.
func TestDispatchWorkerSurvivesNATSRestart(t *testing.T) {
	t.Parallel()
	log := testutil.Logger(t)
	srv, err := natsbus.StartEmbedded(natsbus.EmbeddedOptions{Listen: "127.0.0.1:0", StoreDir: t.TempDir()}, log)
	if err != nil {
		t.Fatal(err)
	}
	addr := srv.Addr().(*net.TCPAddr).String()
	url := "nats://" + addr
	startWorker(t, config{natsURL: url, prefix: "bridge", platform: "band", conn: "restart-bot"})
	ev := subjects.NewEvent("band", "restart-bot", "room-1", "message_created", "m1", time.Now(),
		json.RawMessage(`{"id":"m1","content":"hi","sender_id":"u1","sender_type":"User"}`))
	body := ev.AppendJSON(nil)
	answered := func(what string) {
		nc, err := nats.Connect(url)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		testutil.Eventually(t, 30*time.Second, func() bool {
			m, err := nc.Request("bridge.work.band.restart-bot.room-1.message_created", body, time.Second)
			if err != nil {
				return false
			}
			_, err = subjects.DecodeWorkReply(m.Data)
			return err == nil
		}, "the worker does not answer %s", what)
	}
	answered("before the NATS restart")
	srv.Shutdown()
	srv.WaitForShutdown()
	srv2, err := natsbus.StartEmbedded(natsbus.EmbeddedOptions{Listen: addr, StoreDir: t.TempDir()}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		srv2.Shutdown()
		srv2.WaitForShutdown()
	}()
	answered("after the NATS restart")
}
