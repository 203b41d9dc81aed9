package cmdexec_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bridgeworks/bridge/ackflow"
	"github.com/bridgeworks/bridge/cmdexec"
	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/internal/testutil"
	"github.com/bridgeworks/bridge/natsbus"
	"github.com/bridgeworks/bridge/retry"
	"github.com/bridgeworks/bridge/subjects"
)

// call is one Execute the fake saw.
type call struct {
	cmd connector.Command
	seq int // the "seq" argument, -1 when absent
	at  time.Time
	n   int // how many times this id was executed, this call included
}

// fakeExec is the test double of a platform: it records every call, tracks
// how many rooms execute at once, and answers through script (default: 200
// with {"id": <command id>}).
type fakeExec struct {
	delay  time.Duration
	script func(ctx context.Context, c call) (connector.Response, error)

	mu       sync.Mutex
	calls    []call
	perID    map[string]int
	active   map[string]int // room → attempts running now
	maxRooms int            // most rooms seen running at once
}

func newFake() *fakeExec { return &fakeExec{perID: map[string]int{}, active: map[string]int{}} }

func (f *fakeExec) Execute(ctx context.Context, cmd connector.Command) (connector.Response, error) {
	var a struct {
		Seq *int `json:"seq"`
	}
	_ = json.Unmarshal(cmd.Args, &a)
	c := call{cmd: cmd, seq: -1, at: time.Now()}
	if a.Seq != nil {
		c.seq = *a.Seq
	}
	f.mu.Lock()
	f.perID[cmd.ID]++
	c.n = f.perID[cmd.ID]
	f.calls = append(f.calls, c)
	f.active[cmd.Room]++
	f.maxRooms = max(f.maxRooms, len(f.active))
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		if f.active[cmd.Room]--; f.active[cmd.Room] == 0 {
			delete(f.active, cmd.Room)
		}
		f.mu.Unlock()
	}()
	if f.delay > 0 {
		t := time.NewTimer(f.delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return connector.Response{}, ctx.Err()
		}
	}
	if f.script != nil {
		return f.script(ctx, c)
	}
	data, _ := json.Marshal(map[string]string{"id": cmd.ID})
	return connector.Response{Status: 200, Data: data}, nil
}

func (f *fakeExec) snapshot() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]call(nil), f.calls...)
}

func (f *fakeExec) count(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.perID[id]
}

// env is one test's NATS server with the contract's streams and a
// collector of every result.
type env struct {
	t   *testing.T
	s   *testutil.Server
	ctx context.Context
	res *collector
}

func newEnv(t *testing.T, dupWindow time.Duration) *env {
	t.Helper()
	s := testutil.NATS(t)
	ctx := testutil.Context(t, 90*time.Second)
	if err := natsbus.EnsureStreams(ctx, s.JS, natsbus.StreamOptions{DuplicateWindow: dupWindow}); err != nil {
		t.Fatal(err)
	}
	return &env{t: t, s: s, ctx: ctx, res: collect(t, s.NC, "bridge.res.>")}
}

// options are fast test defaults: tiny backoffs, short waits.
func (e *env) options(fx connector.Executor) cmdexec.Options {
	return cmdexec.Options{
		JS: e.s.JS, NC: e.s.NC, Platform: "band", Conn: "c1", Exec: fx,
		MaxParallelRooms: 4,
		Policy:           ackflow.Policy{MaxAttempts: 5, Retry: retry.Policy{Initial: 5 * time.Millisecond, Max: 20 * time.Millisecond}},
		AckWait:          5 * time.Second, // other tests may starve this one of CPU for seconds
		Log:              testutil.Logger(e.t),
		FetchWait:        200 * time.Millisecond,
		DrainTimeout:     5 * time.Second,
	}
}

// start runs an executor until the returned stop is called (or the test
// ends); stop returns Run's error.
func (e *env) start(o cmdexec.Options) (*cmdexec.Executor, func() error) {
	e.t.Helper()
	ex, err := cmdexec.New(o)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan error, 1)
	go func() { done <- ex.Run(ctx) }()
	stop := sync.OnceValue(func() error {
		cancel()
		return <-done
	})
	e.t.Cleanup(func() {
		if err := stop(); err != nil {
			e.t.Errorf("Run: %v", err)
		}
	})
	return ex, stop
}

// publish stores one command; hdr is pairs of header name and value.
func (e *env) publish(subject, body string, hdr ...string) *jetstream.PubAck {
	e.t.Helper()
	m := nats.NewMsg(subject)
	m.Data = []byte(body)
	for i := 0; i+1 < len(hdr); i += 2 {
		m.Header.Set(hdr[i], hdr[i+1])
	}
	ack, err := e.s.JS.PublishMsg(e.ctx, m)
	if err != nil {
		e.t.Fatal(err)
	}
	return ack
}

func cmdSubject(room, name string) string {
	return subjects.Subject{Prefix: "bridge", Kind: subjects.KindCommand, Platform: "band", Conn: "c1", Room: room, Name: name}.String()
}

// consumerInfo returns the executor's consumer state.
func (e *env) consumerInfo() *jetstream.ConsumerInfo {
	e.t.Helper()
	c, err := e.s.JS.Consumer(e.ctx, "BRIDGE_COMMANDS", cmdexec.ConsumerName("c1"))
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := c.Info(e.ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	return info
}

// dlq returns the last dead letter on subject, or nil.
func (e *env) dlq(subject string) *jetstream.RawStreamMsg {
	st, err := e.s.JS.Stream(e.ctx, "BRIDGE_DLQ")
	if err != nil {
		e.t.Fatal(err)
	}
	m, err := st.GetLastMsgForSubject(e.ctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil
	}
	if err != nil {
		e.t.Fatal(err)
	}
	return m
}

// collector gathers the messages on a subject.
type collector struct {
	mu   sync.Mutex
	msgs []*nats.Msg
}

func collect(t *testing.T, nc *nats.Conn, subject string) *collector {
	t.Helper()
	c := &collector{}
	sub, err := nc.Subscribe(subject, func(m *nats.Msg) {
		c.mu.Lock()
		c.msgs = append(c.msgs, m)
		c.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *collector) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.msgs)
}

// results decodes every message so far.
func (c *collector) results(t *testing.T) []subjects.Result {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]subjects.Result, 0, len(c.msgs))
	for _, m := range c.msgs {
		var r subjects.Result
		if err := json.Unmarshal(m.Data, &r); err != nil {
			t.Fatalf("result on %s: %v", m.Subject, err)
		}
		out = append(out, r)
	}
	return out
}

// byID waits until a result for id arrived and returns the first one with
// the subject it came on.
func (c *collector) byID(t *testing.T, id string) (subjects.Result, string) {
	t.Helper()
	var res subjects.Result
	var subj string
	testutil.Eventually(t, 20*time.Second, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, m := range c.msgs {
			var r subjects.Result
			if json.Unmarshal(m.Data, &r) == nil && r.CommandID == id {
				res, subj = r, m.Subject
				return true
			}
		}
		return false
	}, "no result for %s", id)
	return res, subj
}

// distinct is the number of command ids with a result so far.
func (c *collector) distinct(t *testing.T) int {
	seen := map[string]bool{}
	for _, r := range c.results(t) {
		seen[r.CommandID] = true
	}
	return len(seen)
}

// countID is the number of results for id so far.
func (c *collector) countID(t *testing.T, id string) int {
	n := 0
	for _, r := range c.results(t) {
		if r.CommandID == id {
			n++
		}
	}
	return n
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprint(err))
	}
	return string(b)
}

// rawMsg is a stored message's headers and body.
type rawMsg struct {
	Header nats.Header
	Data   []byte
}
