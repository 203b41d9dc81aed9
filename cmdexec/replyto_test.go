package cmdexec_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/bridgeworks/bridge/subjects"
)

// forgedReplyTos are destinations a worker of c1 must not make the bridge
// publish to: another connection's commands and events, a lease, the
// JetStream API, the bridge's own inbox, and a subject of another service.
var forgedReplyTos = []string{
	"bridge.cmd.band.other-bot._.create_chat",
	"bridge.evt.band.other-bot.room1.message_created",
	"bridge.cmd.band.c1.x.send_message", // not even the worker's own commands
	"$KV.BRIDGE_LEASES.other-bot",
	"$JS.API.STREAM.DELETE.NO_SUCH_STREAM",
	subjects.BridgeInboxPrefix + ".x.1",
	"orders.create",
}

// subscribeSync subscribes synchronously to every subject, so that a
// message's arrival on one of them shows in the others' Pending once a
// later message of the same publisher arrived.
func subscribeSync(t *testing.T, nc *nats.Conn, subs ...string) []*nats.Subscription {
	t.Helper()
	out := make([]*nats.Subscription, len(subs))
	for i, s := range subs {
		sub, err := nc.SubscribeSync(s)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sub.Unsubscribe() })
		out[i] = sub
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return out
}

// assertNothing fails for every forged subscription that received a message.
func assertNothing(t *testing.T, subs []*nats.Subscription) {
	t.Helper()
	for _, sub := range subs {
		if n, _, _ := sub.Pending(); n != 0 {
			m, _ := sub.NextMsg(0)
			t.Errorf("the bridge published to %s: %s", sub.Subject, m.Data)
		}
	}
}

// A Bridge-Reply-To outside the connection's result namespace and inboxes
// gets nothing; the result still goes to P.res…, and a worker inbox still
// gets its result.
func TestReplyToForgedRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0)
	forged := subscribeSync(t, e.s.NC, forgedReplyTos...)
	const legit = "_INBOX_c1.results"
	inbox := subscribeSync(t, e.s.NC, legit)[0]
	o := e.options(newFake())
	reg := prometheus.NewRegistry()
	o.Metrics = testMetrics(t, reg)
	e.start(o)
	for i, to := range forgedReplyTos {
		e.publish(cmdSubject("r", "send_message"), `{}`, subjects.HeaderMsgID, fmt.Sprintf("f%d", i), subjects.HeaderReplyTo, to)
	}
	// Same room, so it runs after every forged one: its result on the
	// worker's inbox comes after anything they could have published.
	e.publish(cmdSubject("r", "send_message"), `{}`, subjects.HeaderMsgID, "legit", subjects.HeaderReplyTo, legit)
	m, err := inbox.NextMsgWithContext(e.ctx)
	if err != nil {
		t.Fatalf("no result on the worker's inbox: %v", err)
	}
	if want := `"command_id":"legit"`; !strings.Contains(string(m.Data), want) {
		t.Fatalf("inbox got %s, want %s", m.Data, want)
	}
	assertNothing(t, forged)
	for i := range forgedReplyTos {
		if res, subj := e.res.byID(t, fmt.Sprintf("f%d", i)); !res.OK || subj != "bridge.res.band.c1.r.send_message" {
			t.Errorf("f%d: result %+v on %s", i, res, subj)
		}
	}
	if got := counterSum(t, reg, "bridge_reply_refused_total", "path", "result"); got != float64(len(forgedReplyTos)) {
		t.Errorf("bridge_reply_refused_total{path=result} = %v, want %d", got, len(forgedReplyTos))
	}
}

// An RPC request whose reply subject is outside the caller's inboxes is
// neither executed nor answered.
func TestRPCForgedReplyRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0)
	forged := subscribeSync(t, e.s.NC, forgedReplyTos...)
	fx := newFake()
	o := e.options(fx)
	o.RPCWorkers = 1 // requests are served in arrival order
	reg := prometheus.NewRegistry()
	o.Metrics = testMetrics(t, reg)
	e.start(o)
	e.request("bridge.rpc.band.c1.me", `{}`) // the subscription is up
	for i, to := range forgedReplyTos {
		m := nats.NewMsg("bridge.rpc.band.c1.me")
		m.Reply = to
		m.Data = []byte(`{}`)
		m.Header.Set(subjects.HeaderMsgID, fmt.Sprintf("f%d", i))
		if err := e.s.NC.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	// Served after every forged request: its reply comes after theirs.
	ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
	defer cancel()
	inbox := e.s.NC.NewRespInbox()
	replies := subscribeSync(t, e.s.NC, inbox)[0]
	req := nats.NewMsg("bridge.rpc.band.c1.me")
	req.Reply, req.Data = inbox, []byte(`{}`)
	req.Header.Set(subjects.HeaderMsgID, "legit")
	if err := e.s.NC.PublishMsg(req); err != nil {
		t.Fatal(err)
	}
	if _, err := replies.NextMsgWithContext(ctx); err != nil {
		t.Fatalf("no reply to a legitimate request: %v", err)
	}
	assertNothing(t, forged)
	for i := range forgedReplyTos {
		if n := fx.count(fmt.Sprintf("f%d", i)); n != 0 {
			t.Errorf("f%d executed %d times", i, n)
		}
	}
	if got := counterSum(t, reg, "bridge_reply_refused_total", "path", "rpc"); got != float64(len(forgedReplyTos)) {
		t.Errorf("bridge_reply_refused_total{path=rpc} = %v, want %d", got, len(forgedReplyTos))
	}
}
