package ackflow_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bridgeworks/bridge/ackflow"
	"github.com/bridgeworks/bridge/claimcheck"
	"github.com/bridgeworks/bridge/internal/testutil"
	"github.com/bridgeworks/bridge/natsbus"
	"github.com/bridgeworks/bridge/subjects"
)

func TestDeadLetter(t *testing.T) {
	t.Parallel()
	s := testutil.NATS(t)
	ctx := testutil.Context(t, 20*time.Second)
	if err := natsbus.EnsureStreams(ctx, s.JS, natsbus.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	src := subjects.Subject{Prefix: "bridge", Kind: subjects.KindCommand, Platform: "band", Conn: "c1", Room: "a.b", Name: "send_message"}
	hdr := nats.Header{}
	hdr.Set(subjects.HeaderMsgID, "k1")
	hdr.Set("X-Trace", "t")
	hdr.Set("Nats-Expected-Stream", "SOMETHING_ELSE") // must not steer the DLQ publish
	body := []byte(`{"content":"hi"}`)
	for range 2 { // the second is deduplicated
		if err := ackflow.DeadLetter(ctx, s.JS, nil, "bridge", src, body, hdr, "mentions_required: need\r\none", 422, 1); err != nil {
			t.Fatal(err)
		}
	}
	st, err := s.JS.Stream(ctx, "BRIDGE_DLQ")
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Fatalf("DLQ holds %d messages, want 1", info.State.Msgs)
	}
	m, err := st.GetLastMsgForSubject(ctx, "bridge.dlq.band.c1.a~2Eb.send_message")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		subjects.HeaderError:         "mentions_required: need  one",
		subjects.HeaderStatus:        "422",
		subjects.HeaderAttempts:      "1",
		subjects.HeaderSourceSubject: "bridge.cmd.band.c1.a~2Eb.send_message",
		subjects.HeaderMsgID:         "bridge.cmd.band.c1.a~2Eb.send_message:k1",
		"X-Trace":                    "t",
		"Nats-Expected-Stream":       "",
	}
	for k, v := range want {
		if got := m.Header.Get(k); got != v {
			t.Errorf("header %s = %q, want %q", k, got, v)
		}
	}
	if string(m.Data) != string(body) {
		t.Errorf("body = %s", m.Data)
	}
	// Kinds other than cmd and evt are refused.
	bad := src
	bad.Kind = subjects.KindResult
	if err := ackflow.DeadLetter(ctx, s.JS, nil, "bridge", bad, body, nil, "x", 0, 1); err == nil || !strings.Contains(err.Error(), "kind") {
		t.Errorf("res source: err = %v", err)
	}
}

func TestDeadLetterIDWithoutMsgID(t *testing.T) {
	t.Parallel()
	a := ackflow.DeadLetterID("s", "", []byte("x"))
	if a != ackflow.DeadLetterID("s", "", []byte("x")) || a == ackflow.DeadLetterID("s", "", []byte("y")) {
		t.Fatalf("id %q is not a function of source and body", a)
	}
}

func TestApplyAndHeartbeat(t *testing.T) {
	t.Parallel()
	s := testutil.NATS(t)
	ctx := testutil.Context(t, 20*time.Second)
	if err := natsbus.EnsureStreams(ctx, s.JS, natsbus.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	cons, err := s.JS.CreateOrUpdateConsumer(ctx, "BRIDGE_COMMANDS", jetstream.ConsumerConfig{
		Durable: "t", AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Second, MaxDeliver: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.JS.Publish(ctx, "bridge.cmd.band.c1.r.x", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	// Held for well past AckWait: no redelivery.
	hb := ackflow.NewHeartbeat(100 * time.Millisecond)
	hb.Hold(m)
	hctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); hb.Run(hctx) }()
	if _, err := cons.Next(jetstream.FetchMaxWait(2500 * time.Millisecond)); err == nil {
		t.Fatal("redelivered while held")
	}
	hb.Release(m)
	stop()
	<-done
	if err := ackflow.Apply(m, ackflow.Decision{Action: ackflow.ActionRetry, Delay: 100 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	m2, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	md, _ := m2.Metadata()
	if md.NumDelivered != 2 {
		t.Fatalf("NumDelivered = %d", md.NumDelivered)
	}
	if err := ackflow.Apply(m2, ackflow.Decision{Action: ackflow.ActionTerm, Reason: "x"}); err != nil {
		t.Fatal(err)
	}
	if _, err := cons.Next(jetstream.FetchMaxWait(500 * time.Millisecond)); err == nil {
		t.Fatal("redelivered after Term")
	}
}

// A dead letter over max_payload keeps its headers and carries the body by
// reference; without a store it fails with an error that says so.
func TestDeadLetterOverLimit(t *testing.T) {
	t.Parallel()
	const limit = 64 << 10
	s := testutil.NATSWith(t, natsbus.EmbeddedOptions{MaxPayload: limit})
	ctx := testutil.Context(t, 20*time.Second)
	if err := natsbus.EnsureStreams(ctx, s.JS, natsbus.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	src := subjects.Subject{Prefix: "bridge", Kind: subjects.KindCommand, Platform: "band", Conn: "c1", Room: "r", Name: "send_message"}
	body := []byte(`{"content":"` + strings.Repeat("z", limit-40) + `"}`)
	hdr := nats.Header{}
	hdr.Set(subjects.HeaderMsgID, "k1")
	if err := ackflow.DeadLetter(ctx, s.JS, nil, "bridge", src, body, hdr, "why", 422, 1); !claimcheck.IsTooLarge(err) {
		t.Fatalf("without a store: %v", err)
	}
	cc := claimcheck.New(claimcheck.Options{JS: s.JS, Conn: "c1"})
	if err := ackflow.DeadLetter(ctx, s.JS, cc, "bridge", src, body, hdr, "why", 422, 1); err != nil {
		t.Fatal(err)
	}
	st, _ := s.JS.Stream(ctx, "BRIDGE_DLQ")
	m, err := st.GetLastMsgForSubject(ctx, "bridge.dlq.band.c1.r.send_message")
	if err != nil {
		t.Fatal(err)
	}
	ref, ok, err := subjects.DataRefFromHeaders(m.Header.Get)
	if !ok || err != nil || len(m.Data) != 0 || m.Header.Get(subjects.HeaderError) != "why" ||
		m.Header.Get(subjects.HeaderMsgID) != "bridge.cmd.band.c1.r.send_message:k1" {
		t.Fatalf("dead letter %v, %d bytes of body (%v %v)", m.Header, len(m.Data), ok, err)
	}
	got, err := claimcheck.Fetch(ctx, s.JS, ref)
	if err != nil || string(got) != string(body) {
		t.Fatalf("fetched %d bytes (%v), want %d", len(got), err, len(body))
	}
}
