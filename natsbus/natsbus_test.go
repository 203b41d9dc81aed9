package natsbus_test

import (
	"testing"
	"time"

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
