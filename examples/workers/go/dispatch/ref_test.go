package main

import (
	"encoding/json"
	"log"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bridgeworks/bridge/claimcheck"
	"github.com/bridgeworks/bridge/internal/testutil"
	"github.com/bridgeworks/bridge/subjects"
)

// TestHandleFetchesByReference: a message too large for one NATS message
// reaches the worker as a reference; the worker fetches it and answers its
// real content.
func TestHandleFetchesByReference(t *testing.T) {
	t.Parallel()
	ns := testutil.NATS(t)
	ctx := testutil.Context(t, 20*time.Second)
	text := strings.Repeat("long ", 400<<10/5)
	payload, _ := json.Marshal(map[string]string{"content": text, "sender_id": "u1", "sender_type": "User"})
	ref, err := claimcheck.New(claimcheck.Options{JS: ns.JS, Conn: "c1"}).Put(ctx, payload)
	if err != nil {
		t.Fatal(err)
	}
	ev := subjects.NewEvent("band", "c1", "room-1", "message_created", "m1", time.Now(), payload)
	ev.Offload(ref)
	sub, err := ns.NC.Subscribe("work", func(m *nats.Msg) { handle(ctx, ns.JS, m, log.New(t.Output(), "", 0)) })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	inbox := nats.NewInbox()
	replies, err := ns.NC.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	if err := ns.NC.PublishRequest("work", inbox, ev.AppendJSON(nil)); err != nil {
		t.Fatal(err)
	}
	for {
		m, err := replies.NextMsgWithContext(ctx)
		if err != nil {
			t.Fatalf("no final reply: %v", err)
		}
		r, err := subjects.DecodeWorkReply(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		if r.Status == subjects.WorkProcessing {
			continue
		}
		if r.Status != subjects.WorkProcessed || len(r.Commands) != 1 || !strings.Contains(string(r.Commands[0].Args), "echo: long long") {
			t.Fatalf("reply %+v does not echo the fetched content", r)
		}
		return
	}
}
