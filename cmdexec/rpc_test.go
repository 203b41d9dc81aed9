package cmdexec_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bridgeworks/bridge/ackflow"
	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/internal/testutil"
	"github.com/bridgeworks/bridge/natsbus"
	"github.com/bridgeworks/bridge/subjects"
)

// request sends an RPC and decodes the reply, waiting for the executor's
// subscription to be up.
func (e *env) request(subject, body string, hdr ...string) subjects.Result {
	e.t.Helper()
	m := nats.NewMsg(subject)
	m.Data = []byte(body)
	for i := 0; i+1 < len(hdr); i += 2 {
		m.Header.Set(hdr[i], hdr[i+1])
	}
	var reply *nats.Msg
	testutil.Eventually(e.t, 10*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(e.ctx, 5*time.Second)
		defer cancel()
		var err error
		reply, err = e.s.NC.RequestMsgWithContext(ctx, m)
		if errors.Is(err, nats.ErrNoResponders) {
			return false
		}
		if err != nil {
			e.t.Fatal(err)
		}
		return true
	}, "no responder on %s", subject)
	var res subjects.Result
	if err := json.Unmarshal(reply.Data, &res); err != nil {
		e.t.Fatal(err)
	}
	return res
}

func TestRPC(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0)
	fx := newFake()
	fx.script = func(_ context.Context, c call) (connector.Response, error) {
		if c.cmd.Name == "send_message" && !strings.Contains(string(c.cmd.Args), "content") {
			return connector.Response{}, connector.BadRequest("content", "is missing")
		}
		return connector.Response{Status: 200, Data: json.RawMessage(`{"room":"` + c.cmd.Room + `","args":` + string(c.cmd.Args) + `}`)}, nil
	}
	e.start(e.options(fx))

	// Round trip: "room" is taken out of the arguments, the rest kept.
	res := e.request("bridge.rpc.band.c1.list_messages", `{"room":"a.b","limit":5,"nested":{"x":[1]}}`)
	if !res.OK || res.Command != "list_messages" || res.CommandID == "" || res.Attempts != 1 {
		t.Fatalf("result %+v", res)
	}
	if want := `{"room":"a.b","args":{"limit":5,"nested":{"x":[1]}}}`; string(res.Data) != want {
		t.Fatalf("data %s, want %s", res.Data, want)
	}
	// No body means no arguments.
	if res := e.request("bridge.rpc.band.c1.me", ``); !res.OK || string(res.Data) != `{"room":"","args":{}}` {
		t.Fatalf("me: %+v", res)
	}
	// An RPC with a Nats-Msg-Id is idempotent.
	for range 2 {
		if res := e.request("bridge.rpc.band.c1.send_message", `{"content":"hi"}`, subjects.HeaderMsgID, "rpc-1"); !res.OK || res.CommandID != "rpc-1" {
			t.Fatalf("rpc-1: %+v", res)
		}
	}
	if n := fx.count("rpc-1"); n != 1 {
		t.Fatalf("rpc-1 executed %d times", n)
	}

	// Bad input: ok:false bad_request naming the field; nothing executed.
	before := len(fx.snapshot())
	bad := []struct{ subject, body, field string }{
		{"bridge.rpc.band.c1.me", `nope`, "body"},
		{"bridge.rpc.band.c1.me", `"str"`, "body"},
		{"bridge.rpc.band.c1.me", `{"room":5}`, "room"},
		{"bridge.rpc.band.c1.a.b", `{}`, "command"},
	}
	for _, b := range bad {
		res := e.request(b.subject, b.body)
		if res.OK || res.Error == nil || res.Error.Code != subjects.ErrCodeBadRequest || !strings.HasPrefix(res.Error.Message, b.field+":") {
			t.Errorf("%s %s: %+v %+v", b.subject, b.body, res, res.Error)
		}
	}
	if n := len(fx.snapshot()); n != before {
		t.Fatalf("bad input executed %d commands", n-before)
	}
	// A platform-side bad request is a bad_request result too.
	if res := e.request("bridge.rpc.band.c1.send_message", `{}`); res.OK || res.Error.Code != subjects.ErrCodeBadRequest || !strings.HasPrefix(res.Error.Message, "content:") {
		t.Fatalf("send_message without content: %+v %+v", res, res.Error)
	}
	// RPC results are replies only, not published on P.res….
	if n := e.res.len(); n != 0 {
		t.Fatalf("%d results on bridge.res", n)
	}
}

// Do runs a command directly: retries, idempotency by id, bad input.
func TestDo(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0)
	fx := newFake()
	fx.script = func(_ context.Context, c call) (connector.Response, error) {
		switch {
		case c.cmd.ID == "flaky" && c.n < 3:
			return connector.Response{}, &connector.PlatformError{Status: 502}
		case c.cmd.Name == "y":
			return connector.Response{}, errors.New("eof")
		}
		return connector.Response{}, nil
	}
	ex, _ := e.start(e.options(fx))
	ctx := e.ctx
	if res := ex.Do(ctx, connector.Command{ID: "flaky", Name: "send_message", Room: "r"}); !res.OK || res.Attempts != 3 || res.Status != 200 {
		t.Fatalf("flaky: %+v", res)
	}
	// Again, as after a crash: answered from the store, not executed.
	if res := ex.Do(ctx, connector.Command{ID: "flaky", Name: "send_message", Room: "r", MaybeExecuted: true}); !res.OK || res.Attempts != 3 {
		t.Fatalf("flaky again: %+v", res)
	}
	if n := fx.count("flaky"); n != 3 {
		t.Fatalf("flaky executed %d times", n)
	}
	if res := ex.Do(ctx, connector.Command{Name: "x", Args: json.RawMessage(`[1]`)}); res.OK || res.Error.Code != subjects.ErrCodeBadRequest || res.CommandID == "" {
		t.Fatalf("bad args: %+v", res)
	}
	if res := ex.Do(ctx, connector.Command{Name: "bad name"}); res.OK || !strings.HasPrefix(res.Error.Message, "command:") {
		t.Fatalf("bad name: %+v", res)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if res := ex.Do(cctx, connector.Command{Name: "y"}); res.OK || res.Error.Code != subjects.ErrCodeUnavailable {
		t.Fatalf("cancelled: %+v", res)
	}
}

// A full RPC pool refuses at once with "unavailable" instead of queueing
// without bound; accepted requests are still answered.
func TestRPCBusy(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0)
	release := make(chan struct{})
	fx := newFake()
	fx.script = func(ctx context.Context, c call) (connector.Response, error) {
		if c.cmd.Name == "slow" {
			<-release
		}
		return connector.Response{}, nil
	}
	o := e.options(fx)
	o.RPCWorkers = 1 // one running, four queued
	e.start(o)
	e.request("bridge.rpc.band.c1.ping", `{}`) // the subscription is up

	replies := collect(t, e.s.NC, "_INBOX.busy.>")
	const n = 8
	send := func(i int) {
		if err := e.s.NC.PublishRequest("bridge.rpc.band.c1.slow", "_INBOX.busy."+string(rune('a'+i)), []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	send(0)
	testutil.Eventually(t, 10*time.Second, func() bool { return len(fx.snapshot()) == 2 }, "first slow request not running")
	for i := 1; i < n; i++ {
		send(i)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return replies.len() >= n-5 }, "refusals: %d", replies.len())
	close(release)
	testutil.Eventually(t, 10*time.Second, func() bool { return replies.len() == n }, "replies: %d", replies.len())
	busy := 0
	for _, r := range replies.results(t) {
		if !r.OK {
			if r.Error.Code != subjects.ErrCodeUnavailable || !r.Error.Retryable {
				t.Fatalf("refusal %+v", r.Error)
			}
			busy++
		}
	}
	if busy != n-5 {
		t.Fatalf("%d refused, want %d", busy, n-5)
	}
}

// TestSharedMuxAndHeartbeat: executors of two connections share the
// process's Mux (their RPC subscriptions) and Heartbeat (their commands in
// hand); each answers its own RPC and executes its own commands, and one
// stopping leaves the other serving.
func TestSharedMuxAndHeartbeat(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0)
	mux := natsbus.NewMux(0)
	hb := ackflow.NewHeartbeat(time.Second) // AckWait is 5s
	ctx, cancel := context.WithCancel(context.Background())
	var bg sync.WaitGroup
	bg.Go(func() { mux.Run(ctx) })
	bg.Go(func() { hb.Run(ctx) })
	// Registered first, so it runs after the executors' own cleanups.
	t.Cleanup(func() { cancel(); bg.Wait() })

	fx := newFake()
	stops := map[string]func() error{}
	for _, conn := range []string{"c1", "c2"} {
		o := e.options(fx)
		o.Conn, o.Mux, o.Heartbeat = conn, mux, hb
		_, stops[conn] = e.start(o)
	}
	for _, conn := range []string{"c1", "c2"} {
		if res := e.request("bridge.rpc.band."+conn+".me", `{}`); !res.OK {
			t.Fatalf("%s: %+v", conn, res)
		}
		e.publish("bridge.cmd.band."+conn+".r1.send_message", `{"content":"hi"}`, subjects.HeaderMsgID, "cmd-"+conn)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return fx.count("cmd-c1") == 1 && fx.count("cmd-c2") == 1 }, "both connections' commands executed")
	if err := stops["c1"](); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.NC.Request("bridge.rpc.band.c1.me", []byte(`{}`), 5*time.Second); !errors.Is(err, nats.ErrNoResponders) {
		t.Fatalf("c1 stopped: %v, want no responders", err)
	}
	if res := e.request("bridge.rpc.band.c2.me", `{}`); !res.OK {
		t.Fatalf("c2 after c1 stopped: %+v", res)
	}
	if d := mux.Dropped(); d != 0 {
		t.Fatalf("mux dropped %d", d)
	}
}
