//go:build chaos

package chaos

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bridgeworks/bridge/internal/testutil"
	"github.com/bridgeworks/bridge/subjects"
)

// startJetStream runs a nats-server process with JetStream storing under
// dir (no auth) and returns its URL; the process stops at the end of t.
func startJetStream(t *testing.T, dir, natsBin string) string {
	t.Helper()
	port := freePort(t)
	ns := start(t, "nats-server", filepath.Join(dir, "nats.log"), nil, natsBin, "-a", "127.0.0.1", "-p", fmt.Sprint(port), "-js", "-sd", filepath.Join(dir, "js"))
	t.Cleanup(func() { ns.stop(t) })
	return fmt.Sprintf("nats://127.0.0.1:%d", port)
}

// cmdWorker plays a worker of one connection that sends durable commands
// and collects their results. It stays connected to the nats-server
// while bridge processes die, so it sees every result.
type cmdWorker struct {
	t              *testing.T
	nc             *nats.Conn
	js             jetstream.JetStream
	platform, conn string

	mu      sync.Mutex
	results map[string]subjects.Result // by command id
	seen    map[string]int             // results received per command id
}

func newCmdWorker(t *testing.T, natsURL, platform, conn string) *cmdWorker {
	t.Helper()
	nc, err := nats.Connect(natsURL, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond), nats.RetryOnFailedConnect(true))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	w := &cmdWorker{t: t, nc: nc, js: js, platform: platform, conn: conn,
		results: map[string]subjects.Result{}, seen: map[string]int{}}
	if _, err := nc.Subscribe(subjects.DefaultPrefix+".res."+platform+"."+conn+".>", func(m *nats.Msg) {
		var r subjects.Result
		if err := json.Unmarshal(m.Data, &r); err != nil {
			t.Errorf("result on %s: %v", m.Subject, err)
			return
		}
		w.mu.Lock()
		w.results[r.CommandID] = r
		w.seen[r.CommandID]++
		w.mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return w
}

// subject is the subject of kind (evt, sys, cmd, …) for the worker's
// connection, followed by rest.
func (w *cmdWorker) subject(kind, rest string) string {
	return subjects.DefaultPrefix + "." + kind + "." + w.platform + "." + w.conn + "." + rest
}

// waitServing waits until a bridge holding the connection answers the
// rpc command probe (it holds the lease and its streams exist).
func (w *cmdWorker) waitServing(probe string) {
	w.t.Helper()
	testutil.Eventually(w.t, 30*time.Second, func() bool {
		_, err := w.nc.Request(w.subject("rpc", probe), []byte(`{}`), time.Second)
		return err == nil
	}, "the bridge answers rpc")
}

// command publishes a durable command with id as its Nats-Msg-Id. It may
// run on any goroutine; a failed publish fails the test.
func (w *cmdWorker) command(room, name, id string, args any) {
	b, err := json.Marshal(args)
	if err != nil {
		w.t.Errorf("command %s: %v", id, err)
		return
	}
	ctx := testutil.Context(w.t, 10*time.Second)
	if _, err := w.js.Publish(ctx, w.subject("cmd", subjects.EscapeToken(room)+"."+name), b, jetstream.WithMsgID(id)); err != nil {
		w.t.Errorf("publish %s %s: %v", name, id, err)
	}
}

// result waits for the result of command id.
func (w *cmdWorker) result(id string) subjects.Result {
	w.t.Helper()
	var r subjects.Result
	testutil.Eventually(w.t, 30*time.Second, func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		var ok bool
		r, ok = w.results[id]
		return ok
	}, "result of command %s", id)
	return r
}

// resultCount is how many distinct commands got a result.
func (w *cmdWorker) resultCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.results)
}

// republished counts results published more than once.
func (w *cmdWorker) republished() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, c := range w.seen {
		n += c - 1
	}
	return n
}
