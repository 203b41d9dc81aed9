package chatapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bridgeworks/bridge/bridge"
	"github.com/bridgeworks/bridge/config"
	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/connector/chatapi"
	"github.com/bridgeworks/bridge/emulator/chatapiemu"
	"github.com/bridgeworks/bridge/internal/testutil"
	"github.com/bridgeworks/bridge/subjects"
)

const e2eConn = "teammate"

// runningBridge is one run of the real bridge (embedded NATS).
type runningBridge struct {
	url  string
	stop func() // graceful stop, waited for; idempotent
}

// startBridge runs the bridge with the chatapi platform only, one
// connection to emu with the given settings lines, its NATS store in dir.
func startBridge(t *testing.T, emu *chatapiemu.Server, dir, settings string) runningBridge {
	t.Helper()
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
[nats.embedded]
listen = "127.0.0.1:0"
store_dir = %q
[http]
listen = "127.0.0.1:0"
[[connection]]
name = %q
platform = "chatapi"
max_parallel_rooms = 128
reconnect_initial = "5ms"
reconnect_max = "50ms"
[connection.settings]
base_url = %q
api_key_env = "CHATAPI_API_KEY"
rate_limit = 10000.0
rate_burst = 1000
%s
`, dir, e2eConn, emu.BaseURL(), settings)), nil)
	if err != nil {
		t.Fatal(err)
	}
	ready := make(chan bridge.Info, 1)
	b, err := bridge.New(cfg, bridge.Options{
		Log:       testutil.Logger(t),
		Registry:  connector.Registry{chatapi.Platform: chatapi.Factory()},
		LookupEnv: func(k string) (string, bool) { return emu.APIKey(), k == "CHATAPI_API_KEY" },
		OnReady:   func(i bridge.Info) { ready <- i },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }() // owned: waited for by stop
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("bridge: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	select {
	case info := <-ready:
		return runningBridge{url: info.NATSClientURL, stop: stop}
	case err := <-done:
		t.Fatalf("bridge stopped before it was ready: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("bridge not ready within 30s")
	}
	return runningBridge{}
}

// stored is one event read back from the events stream.
type stored struct {
	ev   subjects.Event
	name string // the subject's last token
	at   time.Time
}

// collector reads every event of the connection from the events stream,
// in stream order.
type collector struct {
	js     jetstream.JetStream
	filter string
	mu     sync.Mutex
	evs    []stored
}

func collect(t *testing.T, natsURL string) *collector {
	t.Helper()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := testutil.Context(t, 2*time.Minute)
	filter := subjects.DefaultPrefix + ".evt." + chatapi.Platform + "." + e2eConn + ".>"
	cons, err := js.OrderedConsumer(ctx, subjects.StreamName(subjects.DefaultPrefix, subjects.StreamEvents), jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{filter}})
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{js: js, filter: filter}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		ev, err := subjects.DecodeEvent(m.Data())
		if err != nil {
			t.Errorf("event %s: %v", m.Subject(), err)
			return
		}
		md, _ := m.Metadata()
		st := stored{ev: ev, name: m.Subject()[strings.LastIndexByte(m.Subject(), '.')+1:]}
		if md != nil {
			st.at = md.Timestamp
		}
		c.mu.Lock()
		c.evs = append(c.evs, st)
		c.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cc.Stop)
	return c
}

func (c *collector) all() []stored {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]stored(nil), c.evs...)
}

// settled waits until the collector has read every event stored so far,
// then groups them by command id (byCommand): results are published after
// a command's events are stored, and the collector reads at its own pace.
func (c *collector) settled(t *testing.T) map[string][]stored {
	t.Helper()
	ctx := testutil.Context(t, 15*time.Second)
	st, err := c.js.Stream(ctx, subjects.StreamName(subjects.DefaultPrefix, subjects.StreamEvents))
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(c.filter))
	if err != nil {
		t.Fatal(err)
	}
	var stored uint64
	for _, n := range info.State.Subjects {
		stored += n
	}
	testutil.Eventually(t, 15*time.Second, func() bool { return uint64(len(c.all())) >= stored }, "collector read %d stored events", stored)
	return c.byCommand()
}

// byCommand groups the events of each command id, in stream order.
func (c *collector) byCommand() map[string][]stored {
	out := map[string][]stored{}
	for _, s := range c.all() {
		if s.ev.CommandID != "" {
			out[s.ev.CommandID] = append(out[s.ev.CommandID], s)
		}
	}
	return out
}

// publishCommand sends a durable command with id as its Nats-Msg-Id.
func publishCommand(t *testing.T, js jetstream.JetStream, room, name, id string, args any) {
	t.Helper()
	b, _ := json.Marshal(args)
	m := nats.NewMsg(subjects.DefaultPrefix + ".cmd." + chatapi.Platform + "." + e2eConn + "." + subjects.EscapeToken(room) + "." + name)
	m.Data = b
	m.Header.Set(subjects.HeaderMsgID, id)
	if _, err := js.PublishMsg(testutil.Context(t, 10*time.Second), m); err != nil {
		t.Fatalf("publish %s: %v", name, err)
	}
}

// results collects the command results of the connection by command id.
func results(t *testing.T, nc *nats.Conn) func() map[string]subjects.Result {
	t.Helper()
	var mu sync.Mutex
	got := map[string]subjects.Result{}
	_, err := nc.Subscribe(subjects.DefaultPrefix+".res."+chatapi.Platform+"."+e2eConn+".>", func(m *nats.Msg) {
		var r subjects.Result
		if err := json.Unmarshal(m.Data, &r); err != nil {
			t.Errorf("result: %v", err)
			return
		}
		mu.Lock()
		got[r.CommandID] = r
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return func() map[string]subjects.Result {
		mu.Lock()
		defer mu.Unlock()
		out := make(map[string]subjects.Result, len(got))
		for k, v := range got {
			out[k] = v
		}
		return out
	}
}

func worker(t *testing.T, url string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}
