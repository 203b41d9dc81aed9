package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/bridgeworks/bridge/bridge"
	"github.com/bridgeworks/bridge/config"
	"github.com/bridgeworks/bridge/platforms"
	"github.com/bridgeworks/bridge/subjects"
)

// demoConn is the connection name of every demo.
const demoConn = "demo"

// startDemoBridge runs the bridge with one connection, described by the
// TOML of its [[connection]] table, on an embedded NATS storing in a
// temporary directory. env answers the connection's *_env secrets. stop
// ends the bridge and removes the directory.
func startDemoBridge(ctx context.Context, natsAddr, connTOML string, env map[string]string, stderr io.Writer) (info bridge.Info, stop func(), err error) {
	dir, err := os.MkdirTemp("", "bridge-demo-")
	if err != nil {
		return bridge.Info{}, nil, err
	}
	c, err := config.Parse([]byte(fmt.Sprintf(`
[nats.embedded]
listen = %q
[http]
listen = "127.0.0.1:0"
%s`, freeAddr(natsAddr), connTOML)), nil)
	if err != nil {
		_ = os.RemoveAll(dir)
		return bridge.Info{}, nil, err
	}
	c.NATS.Embedded.StoreDir = dir
	ready := make(chan bridge.Info, 1)
	b, err := bridge.New(c, bridge.Options{
		Log: newLogger(config.Log{Level: "error", Format: "console"}, stderr), Registry: platforms.All(),
		OnReady:         func(i bridge.Info) { ready <- i },
		LookupEnv:       func(k string) (string, bool) { v, ok := env[k]; return v, ok },
		ShutdownTimeout: 3 * time.Second,
	})
	if err != nil {
		_ = os.RemoveAll(dir)
		return bridge.Info{}, nil, err
	}
	bctx, stopBridge := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() { done <- b.Run(bctx) }() // owned: stop below
	stop = func() {
		stopBridge()
		if err := <-done; err != nil {
			fmt.Fprintf(stderr, "bridge: %v\n", err)
		}
		_ = os.RemoveAll(dir)
	}
	select {
	case info = <-ready:
		return info, stop, nil
	case err := <-done:
		done <- err
		stop()
		return bridge.Info{}, nil, fmt.Errorf("bridge did not start: %w", err)
	case <-ctx.Done():
		stop()
		return bridge.Info{}, nil, errors.New("bridge did not start in time")
	}
}

// demoClient is the built-in worker's side of the contract: durable
// commands on P.cmd… and their results on P.res….
type demoClient struct {
	nc       *nats.Conn
	js       jetstream.JetStream
	platform string
	sub      *nats.Subscription
	ids      atomic.Int64

	mu      sync.Mutex
	waiting map[string]chan subjects.Result
}

func newDemoClient(nc *nats.Conn, platform string) (*demoClient, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	c := &demoClient{nc: nc, js: js, platform: platform, waiting: map[string]chan subjects.Result{}}
	c.sub, err = nc.Subscribe(subjects.Filter(subjects.DefaultPrefix, subjects.KindResult, platform, demoConn), func(m *nats.Msg) {
		var r subjects.Result
		if json.Unmarshal(m.Data, &r) != nil {
			return
		}
		c.mu.Lock()
		ch := c.waiting[r.CommandID]
		delete(c.waiting, r.CommandID)
		c.mu.Unlock()
		if ch != nil {
			ch <- r // buffered: one result per command
		}
	})
	if err != nil {
		return nil, err
	}
	return c, nc.Flush()
}

func (c *demoClient) close() { _ = c.sub.Unsubscribe() }

// do publishes command for room ("" for none) as a durable command and
// waits for its result.
func (c *demoClient) do(ctx context.Context, room, command string, args any) (subjects.Result, error) {
	body, err := json.Marshal(args)
	if err != nil {
		return subjects.Result{}, err
	}
	id := fmt.Sprintf("demo-%s-%d", command, c.ids.Add(1))
	ch := make(chan subjects.Result, 1)
	c.mu.Lock()
	c.waiting[id] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.waiting, id)
		c.mu.Unlock()
	}()
	m := nats.NewMsg(subjects.Filter(subjects.DefaultPrefix, subjects.KindCommand, c.platform, demoConn))
	m.Subject = strings.TrimSuffix(m.Subject, ">") + subjects.EscapeToken(room) + "." + command
	m.Data = body
	m.Header.Set(subjects.HeaderMsgID, id)
	if _, err := c.js.PublishMsg(ctx, m); err != nil {
		return subjects.Result{}, fmt.Errorf("%s: publish: %w", command, err)
	}
	select {
	case r := <-ch:
		return r, nil
	case <-ctx.Done():
		return subjects.Result{}, fmt.Errorf("%s: no result: %w", command, ctx.Err())
	}
}

// resultError says why a command did not succeed.
func resultError(r subjects.Result) error {
	if r.OK {
		return nil
	}
	if r.Error != nil {
		return fmt.Errorf("%s: %s (%s)", r.Command, r.Error.Message, r.Error.Code)
	}
	return fmt.Errorf("%s: failed with status %d", r.Command, r.Status)
}

// watchDemoEvents reads the connection's events from the events stream
// (an ordered consumer, from the start) and calls fn for each with the
// event name (the subject's last token). stop waits for fn to be done.
func watchDemoEvents(ctx context.Context, js jetstream.JetStream, platform string, fn func(name string, ev subjects.Event)) (stop func(), err error) {
	cons, err := js.OrderedConsumer(ctx, subjects.StreamName(subjects.DefaultPrefix, subjects.StreamEvents), jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subjects.Filter(subjects.DefaultPrefix, subjects.KindEvent, platform, demoConn)},
	})
	if err != nil {
		return nil, fmt.Errorf("events: %w", err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		ev, err := subjects.DecodeEvent(m.Data())
		if err != nil {
			return
		}
		subj := m.Subject()
		fn(subj[strings.LastIndexByte(subj, '.')+1:], ev)
	})
	if err != nil {
		return nil, fmt.Errorf("events: %w", err)
	}
	return func() { cc.Stop(); <-cc.Closed() }, nil
}

// waitFor checks cond until it holds or ctx ends.
func waitFor(ctx context.Context, what string, cond func() bool) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

// demoScreen is the demos' output: a progress line that updates (see
// [progress]) and lines printed above it, from any goroutine.
type demoScreen struct {
	mu sync.Mutex
	p  *progress
}

func newDemoScreen(w io.Writer) *demoScreen { return &demoScreen{p: newProgress(w)} }

// show prints s as the progress line: in place on a terminal, once a
// second elsewhere; final always prints and ends the line.
func (d *demoScreen) show(s string, final bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	p := d.p
	if !p.tty && !final && time.Since(p.last) < time.Second {
		return
	}
	p.last = time.Now()
	switch {
	case p.tty && final:
		fmt.Fprintf(p.w, "\r\033[K%s\n", s)
	case p.tty:
		fmt.Fprintf(p.w, "\r\033[K%s", s)
	default:
		fmt.Fprintln(p.w, s)
	}
}

// say prints one line (above the progress line on a terminal).
func (d *demoScreen) say(format string, args ...any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.p.tty {
		fmt.Fprint(d.p.w, "\r\033[K")
	}
	fmt.Fprintf(d.p.w, format+"\n", args...)
}

// quote shortens s for one line.
func quote(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = s[:n-1] + "…"
	}
	return fmt.Sprintf("%q", s)
}

// demoAnswers are the scripted agents' answers to [demoQuestions].
var demoAnswers = map[string]string{
	"where is my order?":                 "Your order left our warehouse this morning and should arrive within two days.",
	"can I change the delivery address?": "Yes: until the parcel ships you can change the address under Orders, Edit delivery.",
	"how do I reset my password?":        "Choose Forgot password on the sign-in page and follow the link we email you.",
	"is the premium plan worth it?":      "If you order more than twice a month, free delivery alone pays for it.",
	"my invoice looks wrong":             "Sorry about that. I have flagged the invoice and billing will correct it within a day.",
	"do you ship to Norway?":             "We do: delivery to Norway takes four to six working days.",
	"what are your opening hours?":       "Our support team is here from 8 am to 8 pm, Monday to Saturday.",
	"can I talk to a human?":             "Of course. A colleague from the support team will join this chat shortly.",
}

// demoAnswer is the scripted answer to text (a question of the demo, or
// anything else).
func demoAnswer(text string) string {
	for q, a := range demoAnswers {
		if strings.Contains(text, q) {
			return a
		}
	}
	return "Thanks for your message: " + text
}

// runDemoFlows runs flow(i) for i in [0, n) in parallel, refreshing the
// progress line every tick until they have all returned; it returns the
// first error and the time taken. The caller shows the final line.
func runDemoFlows(ctx context.Context, screen *demoScreen, n int, tick time.Duration,
	flow func(ctx context.Context, i int) error, line func(time.Duration) string) (time.Duration, error) {
	start := time.Now()
	g, gctx := errgroup.WithContext(ctx)
	for i := range n {
		g.Go(func() error { return flow(gctx, i) })
	}
	done := make(chan error, 1)
	go func() { done <- g.Wait() }() // owned: waited for below
	show := time.NewTicker(tick)
	defer show.Stop()
	for {
		select {
		case err := <-done:
			return time.Since(start), err
		case <-show.C:
			screen.show(line(time.Since(start)), false)
		}
	}
}
