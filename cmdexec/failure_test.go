package cmdexec_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/internal/testutil"
	"github.com/bridgeworks/bridge/subjects"
)

// A transient failure is retried in place, never before Retry-After, while
// the room's next command waits and the message is kept alive past AckWait;
// retries that run out give "unavailable" and a dead letter.
func TestTransientRetries(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0)
	fx := newFake()
	const retryAfter = 2500 * time.Millisecond
	fx.script = func(_ context.Context, c call) (connector.Response, error) {
		switch {
		case c.cmd.ID == "ra" && c.n == 1:
			return connector.Response{}, &connector.PlatformError{Status: 429, RetryAfter: retryAfter}
		case c.cmd.ID == "ra" && c.n == 2:
			return connector.Response{}, &connector.PlatformError{Status: 503}
		case c.cmd.ID == "ex":
			return connector.Response{}, errors.New("connection reset")
		}
		return connector.Response{Status: 201}, nil
	}
	o := e.options(fx)
	o.AckWait = 1200 * time.Millisecond  // far shorter than the Retry-After: only InProgress keeps it
	o.Policy.Retry.Max = 3 * time.Second // the Retry-After is honoured up to command_backoff_max
	e.start(o)
	e.publish(cmdSubject("r", "send_message"), `{}`, subjects.HeaderMsgID, "ra")
	e.publish(cmdSubject("r", "send_message"), `{}`, subjects.HeaderMsgID, "after")
	e.publish(cmdSubject("x", "send_message"), `{}`, subjects.HeaderMsgID, "ex")

	res, _ := e.res.byID(t, "ra")
	if !res.OK || res.Attempts != 3 || res.Status != 201 {
		t.Fatalf("ra: %+v", res)
	}
	after, _ := e.res.byID(t, "after")
	if !after.OK {
		t.Fatalf("after: %+v", after)
	}
	var raCalls []call
	var afterAt time.Time
	for _, c := range fx.snapshot() {
		switch c.cmd.ID {
		case "ra":
			raCalls = append(raCalls, c)
		case "after":
			afterAt = c.at
		}
	}
	if len(raCalls) != 3 {
		t.Fatalf("ra executed %d times", len(raCalls))
	}
	if gap := raCalls[1].at.Sub(raCalls[0].at); gap < retryAfter {
		t.Fatalf("retried after %s, before Retry-After %s", gap, retryAfter)
	}
	if !afterAt.After(raCalls[2].at) {
		t.Fatal("the room's next command ran before the retried one finished")
	}

	ex, subj := e.res.byID(t, "ex")
	if ex.OK || ex.Error == nil || ex.Error.Code != subjects.ErrCodeUnavailable || !ex.Error.Retryable || ex.Attempts != 5 {
		t.Fatalf("ex: %+v %+v", ex, ex.Error)
	}
	if subj != "bridge.res.band.c1.x.send_message" {
		t.Fatalf("result subject %s", subj)
	}
	var dl = e.waitDLQ("bridge.dlq.band.c1.x.send_message")
	if dl.Header.Get(subjects.HeaderAttempts) != "5" || !strings.HasPrefix(dl.Header.Get(subjects.HeaderError), "unavailable: retries exhausted") {
		t.Fatalf("dead letter headers %v", dl.Header)
	}
	if n := fx.count("ex"); n != 5 {
		t.Fatalf("ex executed %d times", n)
	}
	// Every message was delivered once: no AckWait expiry while retrying.
	testutil.Eventually(t, 10*time.Second, func() bool { return e.consumerInfo().NumAckPending == 0 }, "messages left unacked")
	if info := e.consumerInfo(); info.Delivered.Consumer != 3 {
		t.Fatalf("%d deliveries for 3 messages", info.Delivered.Consumer)
	}
}

// A permanent platform refusal: one attempt, an ok:false result with the
// platform's code, a dead letter with the reason headers, no redelivery.
func TestPermanentErrorDeadLettered(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0)
	fx := newFake()
	fx.script = func(_ context.Context, c call) (connector.Response, error) {
		if c.cmd.ID == "perm" {
			return connector.Response{}, &connector.PlatformError{Status: 422, Code: "mentions_required", Message: "mention someone", Data: []byte(`{"error":"mentions_required"}`)}
		}
		return connector.Response{Status: 200}, nil
	}
	e.start(e.options(fx))
	body := `{"content":"secret user text"}`
	e.publish(cmdSubject("p", "send_message"), body, subjects.HeaderMsgID, "perm", "X-Worker", "w1")
	e.publish(cmdSubject("p", "send_message"), `{}`, subjects.HeaderMsgID, "next")

	res, _ := e.res.byID(t, "perm")
	if res.OK || res.Status != 422 || res.Attempts != 1 || res.Error == nil ||
		res.Error.Code != "mentions_required" || res.Error.Message != "mention someone" || res.Error.Retryable ||
		string(res.Data) != `{"error":"mentions_required"}` {
		t.Fatalf("perm: %+v %+v", res, res.Error)
	}
	if next, _ := e.res.byID(t, "next"); !next.OK {
		t.Fatalf("next: %+v", next)
	}
	dl := e.waitDLQ("bridge.dlq.band.c1.p.send_message")
	want := map[string]string{
		subjects.HeaderError:         "mentions_required: mention someone",
		subjects.HeaderStatus:        "422",
		subjects.HeaderAttempts:      "1",
		subjects.HeaderSourceSubject: "bridge.cmd.band.c1.p.send_message",
		"X-Worker":                   "w1",
	}
	for k, v := range want {
		if got := dl.Header.Get(k); got != v {
			t.Errorf("dead letter %s = %q, want %q", k, got, v)
		}
	}
	if string(dl.Data) != body {
		t.Errorf("dead letter body %s", dl.Data)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return e.consumerInfo().NumAckPending == 0 }, "messages left unacked")
	if n := fx.count("perm"); n != 1 {
		t.Fatalf("perm executed %d times", n)
	}
	if info := e.consumerInfo(); info.Delivered.Consumer != 2 {
		t.Fatalf("%d deliveries for 2 messages", info.Delivered.Consumer)
	}
}

// Bad input gets a bad_request result naming the field and a dead letter,
// and holds nothing up: the room's later commands still run.
func TestBadInput(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0)
	fx := newFake()
	fx.script = func(_ context.Context, c call) (connector.Response, error) {
		if c.cmd.ID == "badarg" {
			return connector.Response{}, connector.BadRequest("mentions[0].id", "is missing")
		}
		return connector.Response{Status: 200}, nil
	}
	e.start(e.options(fx))
	e.publish(cmdSubject("r", "send_message"), `not json`, subjects.HeaderMsgID, "notjson")
	e.publish(cmdSubject("r", "send_message"), `[1,2]`, subjects.HeaderMsgID, "array")
	e.publish("bridge.cmd.band.c1.x~zz.send_message", `{}`, subjects.HeaderMsgID, "badroom")
	e.publish("bridge.cmd.band.c1.r.a.b", `{}`, subjects.HeaderMsgID, "extra")
	e.publish(cmdSubject("r", "send_message"), `{"mentions":[{}]}`, subjects.HeaderMsgID, "badarg")
	e.publish(cmdSubject("r", "send_message"), `{"seq":1}`, subjects.HeaderMsgID, "good")
	e.publish(cmdSubject("r", "mark_processed"), ``) // no body, no id: {} and a generated id

	cases := []struct{ id, field, resSubj, dlqSubj string }{
		{"notjson", "body", "bridge.res.band.c1.r.send_message", ""},
		{"array", "body", "bridge.res.band.c1.r.send_message", ""},
		{"badroom", "room", "bridge.res.band.c1.x~zz.send_message", "bridge.dlq.band.c1.x~7Ezz.send_message"},
		{"extra", "command", "bridge.res.band.c1.r.a.b", "bridge.dlq.band.c1.r.a~2Eb"},
		{"badarg", "mentions[0].id", "bridge.res.band.c1.r.send_message", ""},
	}
	for _, c := range cases {
		res, subj := e.res.byID(t, c.id)
		if res.OK || res.Error == nil || res.Error.Code != subjects.ErrCodeBadRequest || !strings.HasPrefix(res.Error.Message, c.field+":") || res.Error.Retryable {
			t.Errorf("%s: %+v %+v", c.id, res, res.Error)
		}
		if subj != c.resSubj {
			t.Errorf("%s: result on %s, want %s", c.id, subj, c.resSubj)
		}
		if c.dlqSubj != "" {
			if dl := e.waitDLQ(c.dlqSubj); dl.Header.Get(subjects.HeaderMsgID) == "" {
				t.Errorf("%s: dead letter without Nats-Msg-Id", c.id)
			}
		}
	}
	if good, _ := e.res.byID(t, "good"); !good.OK {
		t.Fatalf("good: %+v", good)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return e.res.len() == 7 }, "results: %d", e.res.len())
	st, _ := e.s.JS.Stream(e.ctx, "BRIDGE_DLQ")
	info, _ := st.Info(e.ctx)
	if info.State.Msgs != 5 {
		t.Fatalf("%d dead letters, want 5", info.State.Msgs)
	}
	for _, c := range fx.snapshot() {
		switch c.cmd.ID {
		case "notjson", "array", "badroom", "extra":
			t.Errorf("bad input %s reached the platform", c.cmd.ID)
		}
		if c.cmd.Name == "mark_processed" && (string(c.cmd.Args) != "{}" || !strings.HasPrefix(c.cmd.ID, "seq-")) {
			t.Errorf("empty body: %+v", c.cmd)
		}
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return e.consumerInfo().NumAckPending == 0 }, "messages left unacked")
}

// waitDLQ waits for a dead letter on subject.
func (e *env) waitDLQ(subject string) (m rawMsg) {
	e.t.Helper()
	testutil.Eventually(e.t, 20*time.Second, func() bool {
		if r := e.dlq(subject); r != nil {
			m = rawMsg{Header: r.Header, Data: r.Data}
			return true
		}
		return false
	}, "no dead letter on %s", subject)
	return m
}
