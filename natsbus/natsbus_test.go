package natsbus_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bridgeworks/bridge/internal/testutil"
	"github.com/bridgeworks/bridge/natsbus"
)

func TestEnsureStreamsIdempotent(t *testing.T) {
	t.Parallel()
	s := testutil.NATS(t)
	ctx := testutil.Context(t, 10*time.Second)
	o := natsbus.StreamOptions{Prefix: "bridge"}
	for range 2 {
		if err := natsbus.EnsureStreams(ctx, s.JS, o); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"BRIDGE_EVENTS", "BRIDGE_COMMANDS", "BRIDGE_DLQ"} {
		st, err := s.JS.Stream(ctx, name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		cfg := st.CachedInfo().Config
		if cfg.Storage != jetstream.FileStorage || cfg.Duplicates < 10*time.Minute {
			t.Errorf("%s: storage %v duplicates %s", name, cfg.Storage, cfg.Duplicates)
		}
	}
	// A changed limit updates the stream in place.
	o.EventsMaxAge = 48 * time.Hour
	if err := natsbus.EnsureStreams(ctx, s.JS, o); err != nil {
		t.Fatal(err)
	}
	st, _ := s.JS.Stream(ctx, "BRIDGE_EVENTS")
	if st.CachedInfo().Config.MaxAge != 48*time.Hour {
		t.Errorf("max age not updated")
	}
}

func TestConnectInProcess(t *testing.T) {
	t.Parallel()
	s := testutil.NATS(t)
	ctx := testutil.Context(t, 10*time.Second)
	nc, err := natsbus.Connect(ctx, natsbus.Options{Embedded: s.Srv}, testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if !nc.IsConnected() {
		t.Fatal("not connected")
	}
}

func TestRedactURL(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"nats://user:secret@host:4222":            "nats://REDACTED@host:4222",
		"nats://a:4222, tls://tok@b:4222":         "nats://a:4222,tls://REDACTED@b:4222",
		"wss://x/socket?api_key=secret&vsn=2.0.0": "wss://x/socket?api_key=REDACTED&vsn=REDACTED",
	}
	for in, want := range cases {
		if got := natsbus.RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// BRIDGE_COMMANDS stores the commands of the configured connections only:
// a command for another connection, another platform or a name in another
// case is refused at publish instead of being stored for nobody. An update
// narrows an older stream, and says beforehand what it drops.
func TestCommandsStreamOnlyConfiguredConnections(t *testing.T) {
	t.Parallel()
	s := testutil.NATS(t)
	ctx := testutil.Context(t, 20*time.Second)

	// A stream of an older bridge: every command subject, and a consumer of
	// a connection the new configuration no longer has.
	if err := natsbus.EnsureStreams(ctx, s.JS, natsbus.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.JS.CreateOrUpdateConsumer(ctx, "BRIDGE_COMMANDS", jetstream.ConsumerConfig{
		Durable: "cmd_gone", FilterSubject: "bridge.cmd.band.gone.>", AckPolicy: jetstream.AckExplicitPolicy,
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.JS.Publish(ctx, "bridge.cmd.band.gone.r1.send_message", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}

	o := natsbus.StreamOptions{Connections: []natsbus.StreamConn{{Platform: "band", Name: "support-bot"}, {Platform: "band", Name: "gone"}}}
	dropped, err := natsbus.DroppedCommandSubjects(ctx, s.JS, o)
	if err != nil {
		t.Fatal(err)
	}
	if len(dropped) != 1 || dropped[0] != "bridge.cmd.>" {
		t.Fatalf("dropped %v, want [bridge.cmd.>]", dropped)
	}
	if err := natsbus.EnsureStreams(ctx, s.JS, o); err != nil {
		t.Fatal(err)
	}
	o.Connections = o.Connections[:1]
	if dropped, err = natsbus.DroppedCommandSubjects(ctx, s.JS, o); err != nil {
		t.Fatal(err)
	}
	if len(dropped) != 1 || dropped[0] != "bridge.cmd.band.gone.>" {
		t.Fatalf("dropped %v, want [bridge.cmd.band.gone.>]", dropped)
	}
	if err := natsbus.EnsureStreams(ctx, s.JS, o); err != nil {
		t.Fatalf("narrowing the stream with a consumer of a dropped connection: %v", err)
	}

	if _, err := s.JS.Publish(ctx, "bridge.cmd.band.support-bot.r1.send_message", []byte(`{}`)); err != nil {
		t.Fatalf("command of a configured connection: %v", err)
	}
	for _, subj := range []string{
		"bridge.cmd.band.ghost-conn.r1.send_message",
		"bridge.cmd.slack.support-bot.r1.send_message",
		"bridge.cmd.band.Support-Bot.r1.send_message",
		"bridge.cmd.band.gone.r1.send_message",
	} {
		short, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := s.JS.Publish(short, subj, []byte(`{}`))
		cancel()
		if !errors.Is(err, jetstream.ErrNoStreamResponse) {
			t.Errorf("publish %s: %v, want %v", subj, err, jetstream.ErrNoStreamResponse)
		}
	}
	// What was stored before stays, and the dropped connection's consumer
	// still reads it.
	cons, err := s.JS.Consumer(ctx, "BRIDGE_COMMANDS", "cmd_gone")
	if err != nil {
		t.Fatal(err)
	}
	m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		t.Fatalf("stored command of a dropped connection: %v", err)
	}
	if m.Subject() != "bridge.cmd.band.gone.r1.send_message" {
		t.Fatalf("got %s", m.Subject())
	}
}

// A stream whose configuration already matches is not updated again (the
// server's subject checks grow with the square of the connections); a
// changed one is.
func TestEnsureStreamsLeavesUnchangedStreams(t *testing.T) {
	t.Parallel()
	s := testutil.NATS(t)
	ctx := testutil.Context(t, 20*time.Second)
	updates := make(chan string, 16)
	sub, err := s.NC.Subscribe("$JS.EVENT.ADVISORY.STREAM.UPDATED.>", func(m *nats.Msg) { updates <- m.Subject })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	conns := []natsbus.StreamConn{{Platform: "band", Name: "a"}, {Platform: "band", Name: "b"}}
	o := natsbus.StreamOptions{Prefix: "bridge", Connections: conns}
	for range 3 {
		if err := natsbus.EnsureStreams(ctx, s.JS, o); err != nil {
			t.Fatal(err)
		}
	}
	o.Connections = append(o.Connections, natsbus.StreamConn{Platform: "band", Name: "c"})
	if err := natsbus.EnsureStreams(ctx, s.JS, o); err != nil {
		t.Fatal(err)
	}
	if err := s.NC.Flush(); err != nil {
		t.Fatal(err)
	}
	select {
	case subj := <-updates:
		if subj != "$JS.EVENT.ADVISORY.STREAM.UPDATED.BRIDGE_COMMANDS" {
			t.Fatalf("update advisory %s, want BRIDGE_COMMANDS's only", subj)
		}
	case <-ctx.Done():
		t.Fatal("the commands stream was not updated for a new connection")
	}
	// Give any other advisory a moment to arrive: one round trip to the server.
	if err := s.NC.Flush(); err != nil {
		t.Fatal(err)
	}
	select {
	case subj := <-updates:
		t.Fatalf("a stream updated with an unchanged configuration: %s", subj)
	default:
	}
}

// A bridge serving more connections than the server's default consumer
// limit per stream (1,000 on nats-server) creates a command consumer for
// each: the streams carry a limit of their own.
func TestStreamsAllowAConsumerPerConnection(t *testing.T) {
	t.Parallel()
	s := testutil.NATSWith(t, natsbus.EmbeddedOptions{MaxConsumersPerStream: 2})
	ctx := testutil.Context(t, 20*time.Second)
	var conns []natsbus.StreamConn
	for i := range 4 {
		conns = append(conns, natsbus.StreamConn{Platform: "band", Name: fmt.Sprintf("c%d", i)})
	}
	o := natsbus.StreamOptions{Prefix: "bridge", Connections: conns, EventConsumers: 3}
	if err := natsbus.EnsureStreams(ctx, s.JS, o); err != nil {
		t.Fatal(err)
	}
	for stream, n := range map[string]int{"BRIDGE_COMMANDS": len(conns), "BRIDGE_EVENTS": 3} {
		for i := range n {
			name := fmt.Sprintf("own_%d", i)
			if _, err := s.JS.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{Durable: name, AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
				t.Fatalf("%s: consumer %d of the bridge's %d: %v", stream, i+1, n, err)
			}
		}
	}
	// The limit is there for workers' consumers too, and is kept on a
	// restart with the same configuration (no update).
	st, err := s.JS.Stream(ctx, "BRIDGE_COMMANDS")
	if err != nil {
		t.Fatal(err)
	}
	if got := st.CachedInfo().Config.MaxConsumers; got != len(conns)+1000 {
		t.Fatalf("BRIDGE_COMMANDS max_consumers %d, want %d", got, len(conns)+1000)
	}
	if err := natsbus.EnsureStreams(ctx, s.JS, o); err != nil {
		t.Fatal(err)
	}
}

// Above MaxConnectionSubjects connections BRIDGE_COMMANDS captures each
// platform's commands with one subject (the server's check of a stream's
// subjects grows with their square); going there drops nothing, and
// commands of other platforms are still refused.
func TestCommandsStreamPerPlatformAboveTheLimit(t *testing.T) {
	t.Parallel()
	s := testutil.NATS(t)
	ctx := testutil.Context(t, 30*time.Second)
	var conns []natsbus.StreamConn
	for i := range natsbus.MaxConnectionSubjects {
		conns = append(conns, natsbus.StreamConn{Platform: "band", Name: fmt.Sprintf("c%d", i)})
	}
	o := natsbus.StreamOptions{Prefix: "bridge", Connections: conns}
	if err := natsbus.EnsureStreams(ctx, s.JS, o); err != nil {
		t.Fatal(err)
	}
	st, err := s.JS.Stream(ctx, "BRIDGE_COMMANDS")
	if err != nil {
		t.Fatal(err)
	}
	if n := len(st.CachedInfo().Config.Subjects); n != natsbus.MaxConnectionSubjects {
		t.Fatalf("%d subjects at the limit, want one per connection", n)
	}

	o.Connections = append(o.Connections, natsbus.StreamConn{Platform: "polyai", Name: "p1"})
	dropped, err := natsbus.DroppedCommandSubjects(ctx, s.JS, o)
	if err != nil {
		t.Fatal(err)
	}
	if len(dropped) != 0 {
		t.Fatalf("dropped %d subjects (%v…) going per platform, want none", len(dropped), dropped[0])
	}
	if err := natsbus.EnsureStreams(ctx, s.JS, o); err != nil {
		t.Fatal(err)
	}
	if st, err = s.JS.Stream(ctx, "BRIDGE_COMMANDS"); err != nil {
		t.Fatal(err)
	}
	got := st.CachedInfo().Config.Subjects
	slices.Sort(got)
	if want := []string{"bridge.cmd.band.>", "bridge.cmd.polyai.>"}; !slices.Equal(got, want) {
		t.Fatalf("subjects %v, want %v", got, want)
	}
	for _, subj := range []string{"bridge.cmd.band.c7.r1.send_message", "bridge.cmd.polyai.p2.s1.send_message"} {
		if _, err := s.JS.Publish(ctx, subj, []byte(`{}`)); err != nil {
			t.Errorf("publish %s: %v", subj, err)
		}
	}
	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := s.JS.Publish(short, "bridge.cmd.slack.x.r1.send_message", []byte(`{}`)); !errors.Is(err, jetstream.ErrNoStreamResponse) {
		t.Errorf("command of a platform no connection has: %v, want %v", err, jetstream.ErrNoStreamResponse)
	}
}
