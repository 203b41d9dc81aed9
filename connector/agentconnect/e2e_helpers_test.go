package agentconnect_test

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
	"github.com/bridgeworks/bridge/connector/agentconnect"
	"github.com/bridgeworks/bridge/emulator/agentconnectemu"
	"github.com/bridgeworks/bridge/internal/testutil"
	"github.com/bridgeworks/bridge/subjects"
)

const e2eConn = "acbot"

// runBridge runs the real bridge (embedded NATS storing in storeDir) with
// one agentconnect connection to emu; stop ends it and waits.
func runBridge(t *testing.T, emu *agentconnectemu.Server, storeDir string) (natsURL string, stop func()) {
	t.Helper()
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
[nats.embedded]
listen = "127.0.0.1:0"
[http]
listen = "127.0.0.1:0"
[[connection]]
name = %q
platform = "agentconnect"
reconnect_initial = "5ms"
reconnect_max = "50ms"
[connection.settings]
base_url = %q
username_env = "AC_USER"
password_env = "AC_PASS"
ping_timeout = "1s"
reply_timeout = "3s"
renew_before = "1s"
`, e2eConn, emu.URL())), nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.NATS.Embedded.StoreDir = storeDir
	env := map[string]string{"AC_USER": agentconnectemu.DefaultUser, "AC_PASS": emu.Password()}
	ready := make(chan bridge.Info, 1)
	b, err := bridge.New(cfg, bridge.Options{
		Log:       testutil.Logger(t),
		Registry:  connector.Registry{agentconnect.Platform: agentconnect.Factory()},
		LookupEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok },
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

// worker is a NATS client of the bridge: it sends commands and collects
// results, events and lifecycle events.
type worker struct {
	t  *testing.T
	nc *nats.Conn
	js jetstream.JetStream

	mu      sync.Mutex
	results map[string]subjects.Result // by command id
	resAt   map[string]time.Time
	events  []subjects.Event // P.evt…
	sys     []subjects.Event // P.sys…
}

func newWorker(t *testing.T, natsURL string) *worker {
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	w := &worker{t: t, nc: nc, js: js, results: map[string]subjects.Result{}, resAt: map[string]time.Time{}}
	p := subjects.DefaultPrefix
	sub := func(subj string, fn func(*nats.Msg)) {
		if _, err := nc.Subscribe(subj, fn); err != nil {
			t.Fatal(err)
		}
	}
	sub(p+".res."+agentconnect.Platform+"."+e2eConn+".>", func(m *nats.Msg) {
		var r subjects.Result
		if err := json.Unmarshal(m.Data, &r); err != nil {
			t.Errorf("result: %v", err)
			return
		}
		w.mu.Lock()
		w.results[r.CommandID], w.resAt[r.CommandID] = r, time.Now()
		w.mu.Unlock()
	})
	for kind, list := range map[string]*[]subjects.Event{"evt": &w.events, "sys": &w.sys} {
		sub(p+"."+kind+"."+agentconnect.Platform+"."+e2eConn+".>", func(m *nats.Msg) {
			ev, err := subjects.DecodeEvent(m.Data)
			if err != nil {
				t.Errorf("%s: %v", kind, err)
				return
			}
			w.mu.Lock()
			*list = append(*list, ev)
			w.mu.Unlock()
		})
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	// The bridge answers rpc once it holds the connection's lease.
	testutil.Eventually(t, 30*time.Second, func() bool {
		_, err := nc.Request(p+".rpc."+agentconnect.Platform+"."+e2eConn+".sessions", []byte(`{}`), time.Second)
		return err == nil
	}, "the bridge answers rpc")
	return w
}

// rpc runs a command by request-reply and returns its result.
func (w *worker) rpc(command string, args any) subjects.Result {
	w.t.Helper()
	b, _ := json.Marshal(args)
	m, err := w.nc.Request(subjects.DefaultPrefix+".rpc."+agentconnect.Platform+"."+e2eConn+"."+command, b, 20*time.Second)
	if err != nil {
		w.t.Fatalf("rpc %s: %v", command, err)
	}
	var r subjects.Result
	if err := json.Unmarshal(m.Data, &r); err != nil {
		w.t.Fatalf("rpc %s: %v", command, err)
	}
	return r
}

// createSession creates a human_agent session over rpc.
func (w *worker) createSession() string {
	w.t.Helper()
	r := w.rpc("create_session", map[string]any{"session_type": "human_agent", "agents": map[string]any{"ai": map[string]string{"provider": "groq"}}})
	var d struct {
		SessionID string `json:"session_id"`
	}
	if !r.OK || json.Unmarshal(r.Data, &d) != nil || d.SessionID == "" {
		w.t.Fatalf("create_session: %+v", r)
	}
	return d.SessionID
}

// command publishes a durable command with id.
func (w *worker) command(room, name, id string, args any) {
	w.t.Helper()
	b, _ := json.Marshal(args)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	subj := subjects.DefaultPrefix + ".cmd." + agentconnect.Platform + "." + e2eConn + "." + subjects.EscapeToken(room) + "." + name
	if _, err := w.js.Publish(ctx, subj, b, jetstream.WithMsgID(id)); err != nil {
		w.t.Fatalf("publish %s: %v", name, err)
	}
}

// result waits for the result of command id.
func (w *worker) result(id string, d time.Duration) (subjects.Result, time.Time) {
	w.t.Helper()
	testutil.Eventually(w.t, d, func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		_, ok := w.results[id]
		return ok
	}, "result of command %s", id)
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.results[id], w.resAt[id]
}

// lifecycles returns the lifecycle events named l about room.
func (w *worker) lifecycles(l subjects.Lifecycle, room string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, ev := range w.sys {
		if strings.HasSuffix(ev.Type, "."+string(l)) && ev.Room == room {
			n++
		}
	}
	return n
}

// texts returns the contents of the text events of room.
func (w *worker) texts(room string) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, ev := range w.events {
		var f struct {
			Type, Content string
		}
		if ev.Room == room && json.Unmarshal(ev.Data, &f) == nil && f.Type == "text" {
			out = append(out, f.Content)
		}
	}
	return out
}
