package polyai_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bridgeworks/bridge/bridge"
	"github.com/bridgeworks/bridge/config"
	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/connector/polyai"
	"github.com/bridgeworks/bridge/emulator/polyaiemu"
	"github.com/bridgeworks/bridge/internal/testutil"
	"github.com/bridgeworks/bridge/subjects"
)

const e2eConn = "poly"

// runBridge runs the real bridge (embedded NATS storing in dir) with the
// PolyAI platform and one connection to the emulator at url. stop ends
// it gracefully (it also runs at cleanup).
func runBridge(t *testing.T, emu *polyaiemu.Server, url, dir string) (natsURL string, stop func()) {
	t.Helper()
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
[nats.embedded]
listen = "127.0.0.1:0"
[http]
listen = "127.0.0.1:0"
[[connection]]
name = %q
platform = "polyai"
reconnect_initial = "5ms"
reconnect_max = "50ms"
[connection.settings]
base_url = %q
host = %q
connector_token_env = "POLYAI_CONNECTOR_TOKEN"
echo_timeout = "300ms"
state_flush = "20ms"
stream_timeout = "3s"
`, e2eConn, url, emu.Host())), nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.NATS.Embedded.StoreDir = dir
	ready := make(chan bridge.Info, 1)
	b, err := bridge.New(cfg, bridge.Options{
		Log:       testutil.Logger(t),
		Registry:  connector.Registry{polyai.Platform: polyai.Factory()},
		LookupEnv: func(k string) (string, bool) { return emu.ConnectorToken(), k == "POLYAI_CONNECTOR_TOKEN" },
		OnReady:   func(i bridge.Info) { ready <- i },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }() // owned: waited for by stop
	var once sync.Once
	stop = func() {
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
		return info.NATSClientURL, stop
	case err := <-done:
		t.Fatalf("bridge stopped before it was ready: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("bridge not ready within 30s")
	}
	return "", stop
}

// worker plays a worker: it sends durable commands and reads results and
// the event stream.
type worker struct {
	t  *testing.T
	nc *nats.Conn
	js jetstream.JetStream

	mu      sync.Mutex
	results map[string]subjects.Result
}

func newWorker(t *testing.T, natsURL string) *worker {
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
	w := &worker{t: t, nc: nc, js: js, results: map[string]subjects.Result{}}
	if _, err := nc.Subscribe(subjects.DefaultPrefix+".res.polyai."+e2eConn+".>", func(m *nats.Msg) {
		var r subjects.Result
		if err := json.Unmarshal(m.Data, &r); err != nil {
			t.Errorf("result %q: %v", m.Data, err)
			return
		}
		w.mu.Lock()
		w.results[r.CommandID] = r
		w.mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return w
}

// send publishes command name for room ("" for none) with id as its
// Nats-Msg-Id.
func (w *worker) send(room, name, id string, args any) {
	w.t.Helper()
	b, _ := json.Marshal(args)
	m := nats.NewMsg(subjects.DefaultPrefix + ".cmd.polyai." + e2eConn + "." + subjects.EscapeToken(room) + "." + name)
	m.Data = b
	m.Header.Set(subjects.HeaderMsgID, id)
	if _, err := w.js.PublishMsg(testutil.Context(w.t, 10*time.Second), m); err != nil {
		w.t.Fatalf("publish %s: %v", name, err)
	}
}

// result waits for the result of command id.
func (w *worker) result(id string) subjects.Result {
	w.t.Helper()
	var r subjects.Result
	testutil.Eventually(w.t, 60*time.Second, func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		var ok bool
		r, ok = w.results[id]
		return ok
	}, "result of %s", id)
	return r
}

// createSession runs create_session and returns the new session id.
func (w *worker) createSession(id string, args map[string]any) string {
	w.t.Helper()
	w.send("", "create_session", id, args)
	r := w.result(id)
	var d struct {
		SessionID string `json:"session_id"`
	}
	if !r.OK || json.Unmarshal(r.Data, &d) != nil || d.SessionID == "" {
		w.t.Fatalf("create_session: %+v", r)
	}
	return d.SessionID
}

// stored is one event of the stream with the fields the tests check.
type stored struct {
	subject string
	env     subjects.Event
	wire    struct {
		ID        string          `json:"id"`
		Sequence  *int64          `json:"sequence"`
		Type      string          `json:"type"`
		Payload   json.RawMessage `json:"payload"`
		Metadata  json.RawMessage `json:"metadata"`
		Assembled bool            `json:"assembled"`
	}
}

// events reads every event of the connection stored in BRIDGE_EVENTS
// (lifecycle events included), oldest first.
func (w *worker) events() []stored {
	w.t.Helper()
	ctx := testutil.Context(w.t, 30*time.Second)
	cons, err := w.js.OrderedConsumer(ctx, "BRIDGE_EVENTS", jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subjects.DefaultPrefix + ".evt.polyai." + e2eConn + ".>", subjects.DefaultPrefix + ".sys.polyai." + e2eConn + ".>"}})
	if err != nil {
		w.t.Fatal(err)
	}
	var out []stored
	for {
		batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(300*time.Millisecond))
		if err != nil {
			w.t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			var s stored
			s.subject = m.Subject()
			if s.env, err = subjects.DecodeEvent(m.Data()); err != nil {
				w.t.Fatalf("%s: %v", m.Subject(), err)
			}
			_ = json.Unmarshal(s.env.Data, &s.wire)
			out = append(out, s)
		}
		if n == 0 {
			return out
		}
	}
}

// roomEvents are the platform events of one session, oldest first.
func roomEvents(all []stored, room string) []stored {
	var out []stored
	for _, s := range all {
		if s.env.Room == room && s.wire.Type != "" && s.env.Type != "polyai.session_replaced" {
			out = append(out, s)
		}
	}
	return out
}

// checkOnceInOrder checks that the sequenced events of room stored in
// the stream are exactly the emulator's history: each once, in order.
func checkOnceInOrder(t *testing.T, all []stored, emu *polyaiemu.Server, room string) {
	t.Helper()
	var got []string
	for _, s := range roomEvents(all, room) {
		if s.wire.Sequence != nil {
			got = append(got, fmt.Sprintf("%d:%s", *s.wire.Sequence, s.wire.ID))
		}
	}
	var want []string
	for _, e := range emu.History(room) {
		want = append(want, fmt.Sprintf("%d:%s", e.Sequence, e.ID))
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("session %s: stored %d sequenced events %v,\nwant the history's %d %v", room, len(got), got, len(want), want)
	}
}
