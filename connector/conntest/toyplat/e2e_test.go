package toyplat_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bridgeworks/bridge/bridge"
	"github.com/bridgeworks/bridge/config"
	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/connector/conntest/toyplat"
	"github.com/bridgeworks/bridge/connector/conntest/toyplat/toyemu"
	"github.com/bridgeworks/bridge/internal/testutil"
	"github.com/bridgeworks/bridge/subjects"
)

const e2eConn = "toybot"

// startToyBridge runs the real bridge (embedded NATS) with a registry that
// holds only the toy platform, one connection to emu and a managed-dispatch
// rule for "post" events; it returns where workers connect.
func startToyBridge(t *testing.T, emu *toyemu.Server) string {
	t.Helper()
	cfg, err := config.Parse([]byte(toyBridgeConfig(emu.URL())), nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.NATS.Embedded.StoreDir = t.TempDir()
	ready := make(chan bridge.Info, 1)
	b, err := bridge.New(cfg, bridge.Options{
		Log:       testutil.Logger(t),
		Registry:  connector.Registry{toyplat.Platform: toyplat.Factory()},
		LookupEnv: func(k string) (string, bool) { return emu.Token(), k == "TOY_TOKEN" },
		OnReady:   func(i bridge.Info) { ready <- i },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }() // owned: waited for at cleanup
	var once sync.Once
	t.Cleanup(func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("bridge: %v", err)
			}
		})
	})
	select {
	case info := <-ready:
		return info.NATSClientURL
	case err := <-done:
		t.Fatalf("bridge stopped before it was ready: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("bridge not ready within 30s")
	}
	return ""
}

// toyBridgeConfig is the bridge config of the test: the toy platform's
// own keys in [connection.settings].
func toyBridgeConfig(url string) string {
	return fmt.Sprintf(`
[nats.embedded]
listen = "127.0.0.1:0"
[http]
listen = "127.0.0.1:0"
[[connection]]
name = %q
platform = "toy"
reconnect_initial = "1ms"
reconnect_max = "10ms"
[[dispatch]]
connection = %q
events = ["post"]
timeout = "20s"
max_attempts = 3
backoff_initial = "10ms"
backoff_max = "200ms"
[connection.settings]
base_url = %q
token_env = "TOY_TOKEN"
`, e2eConn, e2eConn, url)
}

// echoWorker answers every dispatched post with a "post" command replying
// to it, after a "processing" reply.
func echoWorker(t *testing.T, natsURL string) {
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	respond := func(m *nats.Msg, r subjects.WorkReply) {
		b, _ := json.Marshal(r)
		if err := m.Respond(b); err != nil {
			t.Errorf("worker reply: %v", err)
		}
	}
	_, err = nc.QueueSubscribe(subjects.DefaultPrefix+".work."+toyplat.Platform+"."+e2eConn+".*.post", "toy-workers", func(m *nats.Msg) {
		ev, err := subjects.DecodeEvent(m.Data)
		if err != nil {
			t.Errorf("worker: %v", err)
			return
		}
		var p toyemu.Post
		if err := json.Unmarshal(ev.Data, &p); err != nil {
			t.Errorf("worker: post data: %v", err)
			return
		}
		respond(m, subjects.WorkReply{Status: subjects.WorkProcessing})
		args, _ := json.Marshal(map[string]string{"text": "echo: " + p.Text, "in_reply_to": p.ID})
		respond(m, subjects.WorkReply{Status: subjects.WorkProcessed, Commands: []subjects.CommandSpec{{Command: "post", Args: args}}})
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

// TestBridgeManagedDispatch runs the toy platform through the real bridge:
// posts reach a worker by managed dispatch, its replies become "post"
// commands on the platform, and the platform sees each post's progress.
func TestBridgeManagedDispatch(t *testing.T) {
	t.Parallel()
	emu := toyemu.New(toyemu.Options{})
	if _, err := emu.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emu.Close)
	convs := []toyemu.Conversation{emu.AddConversation("one"), emu.AddConversation("two")}
	natsURL := startToyBridge(t, emu)
	echoWorker(t, natsURL)
	testutil.Eventually(t, 30*time.Second, func() bool { return emu.Streams() > 0 }, "the bridge's stream is open")

	var posted []toyemu.Post
	for i := range 6 {
		c := convs[i%len(convs)]
		posted = append(posted, emu.Post(c.ID, "ada", fmt.Sprintf("question %d", i)))
	}
	testutil.Eventually(t, 60*time.Second, func() bool {
		n := 0
		for _, c := range convs {
			n += len(emu.BotPosts(c.ID))
		}
		return n >= len(posted)
	}, "%d replies posted", len(posted))
	for _, c := range convs {
		var want, got []string
		for _, p := range posted {
			if p.Conversation == c.ID {
				want = append(want, "echo: "+p.Text+" → "+p.ID)
			}
		}
		for _, r := range emu.BotPosts(c.ID) {
			got = append(got, r.Text+" → "+r.InReplyTo)
		}
		if !slices.Equal(got, want) {
			t.Errorf("conversation %s: replies %q, want %q (one per post, in order)", c.ID, got, want)
		}
	}

	// Processing state: dispatch reports it through the connector's
	// ProcessingTracker, with the toy platform's own commands.
	for _, p := range posted {
		testutil.Eventually(t, 30*time.Second, func() bool {
			return slices.Equal(emu.Progress(p.ID), []string{toyemu.StageSeen, toyemu.StageDone})
		}, "post %s progress seen → done", p.ID)
	}
}
