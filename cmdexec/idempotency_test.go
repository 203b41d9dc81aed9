package cmdexec_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/internal/testutil"
	"github.com/bridgeworks/bridge/subjects"
)

// republish stores id again once the stream's duplicate window has passed
// (until then each publish is dropped as a duplicate).
func (e *env) republish(room, id string) {
	e.t.Helper()
	testutil.Eventually(e.t, 10*time.Second, func() bool {
		return !e.publish(cmdSubject(room, "send_message"), `{}`, subjects.HeaderMsgID, id).Duplicate
	}, "%s still a duplicate", id)
}

// An id executes once: a second message with the same Nats-Msg-Id, stored
// after the stream's duplicate window, is answered from the KV bucket, also
// by a restarted executor.
func TestDuplicateIDExecutesOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 200*time.Millisecond)
	fx := newFake()
	fx.script = func(_ context.Context, c call) (connector.Response, error) {
		if c.cmd.ID == "pf" {
			return connector.Response{}, &connector.PlatformError{Status: 403, Code: "forbidden"}
		}
		return connector.Response{Status: 200, Data: json.RawMessage(`{"n":1}`)}, nil
	}
	o := e.options(fx)
	reg := prometheus.NewRegistry()
	o.Metrics = testMetrics(t, reg) // shared by both executors, as after a restart in one process
	_, stop := e.start(o)
	e.publish(cmdSubject("r", "send_message"), `{}`, subjects.HeaderMsgID, "dup")
	e.publish(cmdSubject("r", "send_message"), `{}`, subjects.HeaderMsgID, "pf")
	first, _ := e.res.byID(t, "dup")
	e.res.byID(t, "pf")

	e.republish("r", "dup")
	e.republish("r", "pf")
	testutil.Eventually(t, 10*time.Second, func() bool { return e.res.countID(t, "dup") == 2 && e.res.countID(t, "pf") == 2 }, "stored results not re-published")

	if err := stop(); err != nil {
		t.Fatal(err)
	}
	e.republish("r", "dup")
	e.publish(cmdSubject("r", "send_message"), `{}`, subjects.HeaderMsgID, "fresh")
	e.start(o)
	e.res.byID(t, "fresh")
	testutil.Eventually(t, 10*time.Second, func() bool { return e.res.countID(t, "dup") == 3 }, "restarted executor did not answer the duplicate")

	if n, m := fx.count("dup"), fx.count("pf"); n != 1 || m != 1 {
		t.Fatalf("executed dup %d times, pf %d times", n, m)
	}
	for _, r := range e.res.results(t) {
		if r.CommandID == "dup" && (string(r.Data) != string(first.Data) || r.Attempts != 1 || !r.OK) {
			t.Fatalf("re-published result %+v differs from %+v", r, first)
		}
		if r.CommandID == "pf" && (r.OK || r.Error.Code != "forbidden") {
			t.Fatalf("pf: %+v", r)
		}
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return e.consumerInfo().NumAckPending == 0 }, "messages left unacked")
	if got := counterSum(t, reg, "bridge_commands_total", "outcome", "duplicate"); got != 3 {
		t.Errorf("bridge_commands_total{outcome=duplicate} = %v, want 3", got)
	}
}

// A command's Bridge-Reply-To gets the result too; an invalid one is
// skipped without holding anything up.
func TestReplyTo(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0)
	replies := collect(t, e.s.NC, "_INBOX_c1.replies.>")
	e.start(e.options(newFake()))
	e.publish(cmdSubject("r", "send_message"), `{}`, subjects.HeaderMsgID, "a", subjects.HeaderReplyTo, "_INBOX_c1.replies.1")
	e.publish(cmdSubject("r", "send_message"), `{}`, subjects.HeaderMsgID, "b", subjects.HeaderReplyTo, "bad.*.subject")
	e.res.byID(t, "a")
	e.res.byID(t, "b")
	got, subj := replies.byID(t, "a")
	if !got.OK || subj != "_INBOX_c1.replies.1" {
		t.Fatalf("reply %+v on %s", got, subj)
	}
	if replies.len() != 1 {
		t.Fatalf("%d replies", replies.len())
	}
}
