package cmdexec_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/bridgeworks/bridge/claimcheck"
	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/internal/testutil"
	"github.com/bridgeworks/bridge/natsbus"
	"github.com/bridgeworks/bridge/subjects"
)

// smallLimit is the test server's max_payload: small, so reaching it is cheap.
const smallLimit = 64 << 10

// newSmallEnv is newEnv on a server whose max_payload is smallLimit.
func newSmallEnv(t *testing.T) *env {
	t.Helper()
	s := testutil.NATSWith(t, natsbus.EmbeddedOptions{MaxPayload: smallLimit})
	ctx := testutil.Context(t, 90*time.Second)
	if err := natsbus.EnsureStreams(ctx, s.JS, natsbus.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	return &env{t: t, s: s, ctx: ctx, res: collect(t, s.NC, "bridge.res.>")}
}

// A command just under max_payload fails for good: its dead letter (the
// body plus the reason headers) is over the limit, so it keeps its headers
// and carries the body by reference, and the room's next command runs.
func TestDeadLetterOverLimitGoesByReference(t *testing.T) {
	t.Parallel()
	e := newSmallEnv(t)
	fx := newFake()
	fx.script = func(_ context.Context, c call) (connector.Response, error) {
		if c.cmd.ID == "big" {
			return connector.Response{}, &connector.PlatformError{Status: 422, Code: "content_too_long", Message: "too long"}
		}
		return connector.Response{Status: 200}, nil
	}
	e.start(e.options(fx))
	body := `{"content":"` + strings.Repeat("x", smallLimit-100) + `"}`
	e.publish(cmdSubject("p", "send_message"), body, subjects.HeaderMsgID, "big", "X-Worker", "w1")
	e.publish(cmdSubject("p", "send_message"), `{}`, subjects.HeaderMsgID, "next")

	if res, _ := e.res.byID(t, "big"); res.OK || res.Error == nil || res.Error.Code != "content_too_long" {
		t.Fatalf("big: %+v", res)
	}
	if next, _ := e.res.byID(t, "next"); !next.OK {
		t.Fatalf("next: %+v", next)
	}
	dl := e.waitDLQ("bridge.dlq.band.c1.p.send_message")
	for k, v := range map[string]string{
		subjects.HeaderError: "content_too_long: too long", subjects.HeaderStatus: "422",
		subjects.HeaderSourceSubject: "bridge.cmd.band.c1.p.send_message", "X-Worker": "w1",
	} {
		if got := dl.Header.Get(k); got != v {
			t.Errorf("dead letter %s = %q, want %q", k, got, v)
		}
	}
	ref, ok, err := subjects.DataRefFromHeaders(dl.Header.Get)
	if !ok || err != nil || len(dl.Data) != 0 {
		t.Fatalf("dead letter carries no reference (%v, %v) or a body of %d bytes", ok, err, len(dl.Data))
	}
	got, err := claimcheck.Fetch(e.ctx, e.s.JS, ref)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, []byte(body)) {
		t.Fatalf("fetched body of %d bytes differs from the command's %d", len(got), len(body))
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return e.consumerInfo().NumAckPending == 0 }, "messages left unacked")
}

// A result over max_payload is answered with a too_large error at once, on
// RPC and on P.res…, instead of being dropped; the executed-id record holds
// the same small result, so a retried request gets it without a second
// platform call; a durable command with such a result is not dead-lettered.
func TestResultOverLimitIsTooLarge(t *testing.T) {
	t.Parallel()
	e := newSmallEnv(t)
	fx := newFake()
	big := []byte(`{"messages":"` + strings.Repeat("m", 2*smallLimit) + `"}`)
	fx.script = func(_ context.Context, c call) (connector.Response, error) {
		if c.cmd.Name == "list_messages" {
			return connector.Response{Status: 200, Data: big}, nil
		}
		return connector.Response{Status: 200}, nil
	}
	e.start(e.options(fx))
	start := time.Now()
	check := func(what string, res subjects.Result) {
		t.Helper()
		if res.OK || res.Error == nil || res.Error.Code != subjects.ErrCodeTooLarge || res.Error.Retryable ||
			!strings.Contains(res.Error.Message, "65536") || res.Status != 200 || len(res.Data) != 0 {
			t.Fatalf("%s: %+v %+v", what, res, res.Error)
		}
	}
	check("rpc", e.request("bridge.rpc.band.c1.list_messages", `{"room":"r"}`, subjects.HeaderMsgID, "rpc1"))
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("the too_large answer took %s", d)
	}
	check("rpc again", e.request("bridge.rpc.band.c1.list_messages", `{"room":"r"}`, subjects.HeaderMsgID, "rpc1"))
	if n := fx.count("rpc1"); n != 1 {
		t.Errorf("rpc1 executed %d times, want 1 (the second answer comes from the record)", n)
	}

	e.publish(cmdSubject("r", "list_messages"), `{}`, subjects.HeaderMsgID, "dur1")
	e.publish(cmdSubject("r", "send_message"), `{}`, subjects.HeaderMsgID, "dur2")
	res, _ := e.res.byID(t, "dur1")
	check("durable", res)
	if next, _ := e.res.byID(t, "dur2"); !next.OK {
		t.Fatalf("dur2: %+v", next)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return e.consumerInfo().NumAckPending == 0 }, "messages left unacked")
	if dl := e.dlq("bridge.dlq.band.c1.r.list_messages"); dl != nil {
		t.Errorf("an executed command with a too large result was dead-lettered: %v", dl.Header)
	}
}
