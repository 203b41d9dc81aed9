package bridge

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bridgeworks/bridge/emulator/bandemu"
	"github.com/bridgeworks/bridge/internal/testutil"
	"github.com/bridgeworks/bridge/subjects"
)

// The connection and users of the block in docs/security.md.
const (
	docConn         = "support-bot"
	docWorkerInbox  = "_INBOX_support-bot"
	docWorkerDur    = "worker-support-bot"
	docBridgePass   = "bridge-pw-2c61"
	docWorkerPass   = "worker-pw-7d0e"
	docSecurityFile = "../docs/security.md"
)

// workerErrors collects a worker connection's asynchronous errors
// (permission violations arrive that way).
type workerErrors struct {
	mu   sync.Mutex
	errs []string
}

func (w *workerErrors) handler(_ *nats.Conn, _ *nats.Subscription, err error) {
	w.mu.Lock()
	w.errs = append(w.errs, err.Error())
	w.mu.Unlock()
}

func (w *workerErrors) list() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.errs...)
}

// The whole bridge runs under the documented least-privilege permissions:
// it provisions its streams, holds its lease, stores events, runs managed
// dispatch for a worker that has only the documented worker user, executes
// that worker's durable command and RPC with the results in the worker's
// own inbox, and never needs a right the block does not give (no
// permissions violation in its log). A Bridge-Reply-To aimed at the
// connection's lease or at a command subject is refused.
func TestDocumentedPermissionsRunTheBridge(t *testing.T) {
	t.Parallel()
	srv := testutil.DocumentedNATS(t, docSecurityFile, map[string]string{
		"BRIDGE_NATS_PASSWORD": docBridgePass, "SUPPORT_BOT_NATS_PASSWORD": docWorkerPass,
	})
	emu := bandemu.New(bandemu.Options{HeartbeatTimeout: 2 * time.Second})
	emuURL, err := emu.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emu.Close)
	user := emu.AddUser("Dana Levi")
	room := emu.AddRoom("support", user.ID)

	cfg := fmt.Sprintf(`
[nats]
url = %q
user = "bridge"
password_env = "BRIDGE_NATS_PASSWORD"
[lease]
ttl = "2s"
[[connection]]
name = %q
platform = "band"
[connection.settings]
base_url = %q
agent_id = %q
api_key_env = "BAND_KEY"
[[dispatch]]
connection = %q
timeout = "10s"
max_attempts = 3
backoff_initial = "10ms"
backoff_max = "50ms"
`, srv.ClientURL(), docConn, emuURL, emu.AgentID(), docConn)
	var logs logBuffer
	h, err := runLogged(t, cfg, map[string]string{"BAND_KEY": emu.APIKey(), "BRIDGE_NATS_PASSWORD": docBridgePass}, &logs)
	if err != nil {
		t.Fatalf("bridge under the documented permissions: %v", err)
	}
	// Connected needs the lease, so the lease bucket is writable.
	testutil.Eventually(t, 30*time.Second, func() bool { return statusOf(t, h.info.HTTPAddr) == StateConnected }, "connection %s connected", docConn)
	ctx := testutil.Context(t, 60*time.Second)
	bjs, err := jetstream.New(h.info.Conn)
	if err != nil {
		t.Fatal(err)
	}
	// The connectors' state bucket is writable and readable as the bridge
	// user (the bridge created it at start).
	skv, err := bjs.KeyValue(ctx, StateBucket("bridge"))
	if err != nil {
		t.Fatalf("state bucket: %v", err)
	}
	state := newStateStore(skv, docConn, nil)
	if _, err := state.Put(ctx, "cursor", []byte("1")); err != nil {
		t.Fatalf("state put under the documented permissions: %v", err)
	}
	if v, _, err := state.Get(ctx, "cursor"); err != nil || string(v) != "1" {
		t.Fatalf("state get under the documented permissions: %q %v", v, err)
	}
	// The operator's step: the worker's durable pull consumer.
	if _, err := bjs.CreateOrUpdateConsumer(ctx, "BRIDGE_EVENTS", jetstream.ConsumerConfig{
		Durable: docWorkerDur, FilterSubject: "bridge.evt.band." + docConn + ".>", AckPolicy: jetstream.AckExplicitPolicy,
	}); err != nil {
		t.Fatal(err)
	}

	// The worker, connected as the doc shows, answering managed dispatch.
	var werrs workerErrors
	worker, err := nats.Connect(srv.ClientURL(), nats.UserInfo("support-bot-worker", docWorkerPass),
		nats.CustomInboxPrefix(docWorkerInbox), nats.ErrorHandler(werrs.handler))
	if err != nil {
		t.Fatalf("worker connect: %v", err)
	}
	t.Cleanup(worker.Close)
	wjs, err := jetstream.New(worker)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := worker.QueueSubscribe("bridge.work.band."+docConn+".>", "workers", func(m *nats.Msg) {
		for _, r := range reply(user.ID) {
			b, _ := json.Marshal(r)
			_ = m.Respond(b)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := worker.Flush(); err != nil {
		t.Fatal(err)
	}

	// Events and managed dispatch.
	msg := emu.PostUserMessage(room.ID, user.ID, "@Bridge Bot where is my order?")
	testutil.Eventually(t, 30*time.Second, func() bool { st, _ := emu.Status(msg.ID); return st == bandemu.StatusProcessed }, "dispatched message processed")
	if got := emu.AgentMessages(room.ID); len(got) != 1 {
		t.Fatalf("%d agent replies after dispatch, want 1", len(got))
	}
	cons, err := wjs.Consumer(ctx, "BRIDGE_EVENTS", docWorkerDur)
	if err != nil {
		t.Fatalf("worker's consumer: %v", err)
	}
	ev, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
	if err != nil {
		t.Fatalf("worker reads its events: %v", err)
	}
	if !strings.HasPrefix(ev.Subject(), "bridge.evt.band."+docConn+".") {
		t.Fatalf("worker read %s", ev.Subject())
	}
	if err := ev.DoubleAck(ctx); err != nil {
		t.Fatalf("worker acks its event: %v", err)
	}

	// A durable command with Bridge-Reply-To in the worker's own inbox; two
	// forged ones before it, in the same room.
	results, err := worker.SubscribeSync(docWorkerInbox + ".results")
	if err != nil {
		t.Fatal(err)
	}
	if err := worker.Flush(); err != nil {
		t.Fatal(err)
	}
	cmdSubj := "bridge.cmd.band." + docConn + "." + subjects.EscapeToken(room.ID)
	args, _ := json.Marshal(map[string]any{"content": "shipped today", "mentions": []map[string]string{{"id": user.ID}}})
	for i, to := range []string{"$KV.BRIDGE_LEASES." + docConn, "bridge.cmd.band." + docConn + "._.create_chat", docWorkerInbox + ".results"} {
		m := nats.NewMsg(cmdSubj + ".send_message")
		m.Data = args
		m.Header.Set(subjects.HeaderMsgID, fmt.Sprintf("doc-cmd-%d", i))
		m.Header.Set(subjects.HeaderReplyTo, to)
		if _, err := wjs.PublishMsg(ctx, m); err != nil {
			t.Fatalf("worker publishes its command: %v", err)
		}
	}
	rm, err := results.NextMsgWithContext(ctx)
	if err != nil {
		t.Fatalf("no result in the worker's inbox: %v", err)
	}
	var res subjects.Result
	if err := json.Unmarshal(rm.Data, &res); err != nil || !res.OK || res.CommandID != "doc-cmd-2" {
		t.Fatalf("result %s (%v)", rm.Data, err)
	}
	if got := emu.AgentMessages(room.ID); len(got) != 4 {
		t.Fatalf("%d agent replies after the commands, want 4", len(got))
	}
	// The executed id was stored: the bucket exists and holds the three.
	kv, err := bjs.KeyValue(ctx, "BRIDGE_EXECUTED")
	if err != nil {
		t.Fatalf("executed-ids bucket: %v", err)
	}
	if keys, err := kv.ListKeys(ctx); err != nil {
		t.Fatal(err)
	} else {
		n := 0
		for range keys.Keys() {
			n++
		}
		if n < 3 {
			t.Fatalf("%d executed ids stored, want at least 3", n)
		}
	}
	// The forged destinations got nothing: the lease still holds the
	// bridge's value, and no create_chat was stored.
	leases, err := bjs.KeyValue(ctx, "BRIDGE_LEASES")
	if err != nil {
		t.Fatal(err)
	}
	if e, err := leases.Get(ctx, docConn); err != nil || strings.Contains(string(e.Value()), "command_id") {
		t.Fatalf("lease of %s: %v %q", docConn, err, valueOf(e))
	}
	st, err := bjs.Stream(ctx, "BRIDGE_COMMANDS")
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter("bridge.cmd.>"))
	if err != nil {
		t.Fatal(err)
	}
	if n := info.State.Subjects["bridge.cmd.band."+docConn+"._.create_chat"]; n != 0 {
		t.Fatalf("%d forged create_chat commands stored", n)
	}

	// RPC: the reply reaches the worker's inbox.
	rep, err := worker.RequestWithContext(ctx, "bridge.rpc.band."+docConn+".me", []byte(`{}`))
	if err != nil {
		t.Fatalf("rpc me: %v", err)
	}
	if err := json.Unmarshal(rep.Data, &res); err != nil || !res.OK {
		t.Fatalf("rpc me: %s", rep.Data)
	}

	if errs := werrs.list(); len(errs) != 0 {
		t.Errorf("worker errors: %v", errs)
	}
	if strings.Contains(strings.ToLower(logs.String()), "permissions violation") {
		t.Errorf("the bridge hit a permissions violation:\n%s", grep(logs.String(), "ermission"))
	}
	if st := statusOf(t, h.info.HTTPAddr); st != StateConnected {
		t.Errorf("connection %s is %s at the end", docConn, st)
	}
}

func valueOf(e jetstream.KeyValueEntry) string {
	if e == nil {
		return ""
	}
	return string(e.Value())
}
