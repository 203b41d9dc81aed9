package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bridgeworks/bridge/bridge"
	"github.com/bridgeworks/bridge/config"
	"github.com/bridgeworks/bridge/emulator/bandemu"
	"github.com/bridgeworks/bridge/platforms"
	"github.com/bridgeworks/bridge/subjects"
)

// demoOptions are the demo's flags.
type demoOptions struct {
	duration time.Duration
	rooms    int
	messages int
	rate     float64
	noWorker bool
	natsAddr string
	platform string
}

// cmdDemo runs the whole mission on one machine: embedded NATS, the Band
// emulator with a scripted conversation, the bridge with managed dispatch,
// and (unless --no-worker) a built-in worker that answers every message.
// --platform picks another platform's emulator and worker (demo_*.go).
func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o demoOptions
	fs.DurationVar(&o.duration, "duration", 45*time.Second, "give up after this long")
	fs.IntVar(&o.rooms, "rooms", 3, "chat rooms in the scripted conversation")
	fs.IntVar(&o.messages, "messages", 8, "user messages per room")
	fs.Float64Var(&o.rate, "rate", 10, "user messages posted per second, all rooms together (band only)")
	fs.BoolVar(&o.noWorker, "no-worker", false, "do not start the built-in worker: answer bridge.work.band.demo.> yourself")
	fs.StringVar(&o.natsAddr, "nats-listen", "127.0.0.1:4222", "where the embedded NATS listens for workers (a free port is taken if busy)")
	fs.StringVar(&o.platform, "platform", "band", "the platform to emulate: band, polyai (rooms are sessions), chatapi (rooms are agents) or agentconnect (rooms are sessions)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.rooms < 1 || o.messages < 1 || o.rate <= 0 {
		return fmt.Errorf("%w: --rooms, --messages and --rate must be positive", errUsage)
	}
	run, ok := map[string]func(context.Context, demoOptions, io.Writer, io.Writer) error{
		"band": runDemo, "polyai": runDemoPolyAI, "chatapi": runDemoChatAPI, "agentconnect": runDemoAgentConnect,
	}[o.platform]
	if !ok {
		return fmt.Errorf("%w: --platform %q: want band, polyai, chatapi or agentconnect", errUsage, o.platform)
	}
	ctx, cancel := context.WithTimeout(ctx, o.duration)
	defer cancel()
	return run(ctx, o, stdout, stderr)
}

func runDemo(ctx context.Context, o demoOptions, stdout, stderr io.Writer) error {
	dir, err := os.MkdirTemp("", "bridge-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	emu := bandemu.New(bandemu.Options{AgentName: "Demo Agent"})
	emuURL, err := emu.Start()
	if err != nil {
		return fmt.Errorf("band emulator: %w", err)
	}
	defer emu.Close()
	var rooms []bandemu.Room
	var users []bandemu.User
	names := []string{"Dana Levi", "Sam Okafor", "Mira Chen", "Alex Romero", "Jo Park"}
	for i := range o.rooms {
		u := emu.AddUser(names[i%len(names)])
		users = append(users, u)
		rooms = append(rooms, emu.AddRoom(fmt.Sprintf("support #%d", i+1), u.ID))
	}

	c, err := config.Parse([]byte(fmt.Sprintf(`
[nats.embedded]
listen = %q
[http]
listen = "127.0.0.1:0"
[[connection]]
name = "demo"
platform = "band"
[connection.settings]
base_url = %q
agent_id = %q
api_key_env = "DEMO_BAND_KEY"
[[dispatch]]
connection = "demo"
timeout = "10s"
max_attempts = 3
backoff_initial = "200ms"
backoff_max = "2s"
`, freeAddr(o.natsAddr), emuURL, emu.AgentID())), nil)
	if err != nil {
		return err
	}
	c.NATS.Embedded.StoreDir = dir
	log := newLogger(config.Log{Level: "error", Format: "console"}, stderr)
	ready := make(chan bridge.Info, 1)
	b, err := bridge.New(c, bridge.Options{
		Log: log, Registry: platforms.All(), OnReady: func(i bridge.Info) { ready <- i },
		LookupEnv:       func(k string) (string, bool) { return emu.APIKey(), k == "DEMO_BAND_KEY" },
		ShutdownTimeout: 3 * time.Second,
	})
	if err != nil {
		return err
	}
	bctx, stopBridge := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() { done <- b.Run(bctx) }() // owned: stopBridge + <-done below
	defer func() {
		stopBridge()
		if err := <-done; err != nil {
			fmt.Fprintf(stderr, "bridge: %v\n", err)
		}
	}()
	var info bridge.Info
	select {
	case info = <-ready:
	case err := <-done:
		done <- err
		return fmt.Errorf("bridge did not start: %w", err)
	case <-ctx.Done():
		return errors.New("bridge did not start in time")
	}

	fmt.Fprintf(stdout, "bridge demo: %d rooms x %d messages on the Band emulator, %.0f msg/s\n", o.rooms, o.messages, o.rate)
	fmt.Fprintf(stdout, "  NATS for workers: %s   status: http://%s/status\n\n", info.NATSClientURL, info.HTTPAddr)
	var handled atomic.Int64
	if !o.noWorker {
		sub, err := startDemoWorker(info.Conn, &handled)
		if err != nil {
			return err
		}
		defer func() { _ = sub.Unsubscribe() }()
	} else {
		fmt.Fprintf(stdout, "  --no-worker: answer requests on bridge.work.band.demo.> (queue group of your choice), e.g.\n"+
			"    nats --server %s reply 'bridge.work.band.demo.>' '{\"status\":\"processed\"}' --queue workers\n\n", info.NATSClientURL)
	}
	js, err := jetstream.New(info.Conn)
	if err != nil {
		return err
	}

	// The script: users post in turn, at the given rate, while progress shows.
	total := o.rooms * o.messages
	var posted []string
	tick := time.NewTicker(time.Duration(float64(time.Second) / o.rate))
	defer tick.Stop()
	show := time.NewTicker(250 * time.Millisecond)
	defer show.Stop()
	start := time.Now()
	p := newProgress(stdout)
	for {
		st := demoStats(ctx, emu, js, rooms, posted, &handled)
		if len(posted) == total && st.processed+st.failed == total {
			p.line(st, total, time.Since(start), true)
			return demoSummary(stdout, st, total, time.Since(start), info)
		}
		select {
		case <-ctx.Done():
			p.line(st, total, time.Since(start), true)
			_ = demoSummary(stdout, st, total, time.Since(start), info)
			return fmt.Errorf("not every message was processed within --duration (%d of %d)", st.processed, total)
		case <-tick.C:
			if len(posted) < total {
				i := len(posted)
				r, u := rooms[i%o.rooms], users[i%o.rooms]
				m := emu.PostUserMessage(r.ID, u.ID, fmt.Sprintf("@Demo Agent %s (question %d)", demoQuestions[i%len(demoQuestions)], i/o.rooms+1))
				posted = append(posted, m.ID)
			}
		case <-show.C:
			p.line(st, total, time.Since(start), false)
		}
	}
}

var demoQuestions = []string{
	"where is my order?", "can I change the delivery address?", "how do I reset my password?",
	"is the premium plan worth it?", "my invoice looks wrong", "do you ship to Norway?",
	"what are your opening hours?", "can I talk to a human?",
}

// startDemoWorker answers every work request: processing, a short think,
// then processed with a reply that mentions the sender.
func startDemoWorker(nc *nats.Conn, handled *atomic.Int64) (*nats.Subscription, error) {
	return nc.QueueSubscribe("bridge.work.band.demo.>", "demo-workers", func(m *nats.Msg) {
		ev, err := subjects.DecodeEvent(m.Data)
		if err != nil {
			_ = m.Respond([]byte(`{"status":"failed","error":"not an event","retry":false}`))
			return
		}
		var msg struct {
			Content    string `json:"content"`
			SenderID   string `json:"sender_id"`
			SenderName string `json:"sender_name"`
		}
		_ = json.Unmarshal(ev.Data, &msg)
		_ = m.Respond([]byte(`{"status":"processing"}`))
		args, _ := json.Marshal(map[string]any{
			"content":  "Thanks " + firstName(msg.SenderName) + ", looking into: " + strings.TrimSpace(strings.TrimPrefix(msg.Content, "@Demo Agent")),
			"mentions": []map[string]string{{"id": msg.SenderID}},
		})
		reply, _ := json.Marshal(subjects.WorkReply{Status: subjects.WorkProcessed, Commands: []subjects.CommandSpec{{Command: "send_message", Args: args}}})
		_ = m.Respond(reply)
		handled.Add(1)
	})
}

func firstName(s string) string {
	if f, _, ok := strings.Cut(s, " "); ok {
		return f
	}
	return s
}

type demoCounts struct {
	posted, stored, dispatched, replied, processed, failed int
}

func demoStats(ctx context.Context, emu *bandemu.Server, js jetstream.JetStream, rooms []bandemu.Room, posted []string, handled *atomic.Int64) demoCounts {
	st := demoCounts{posted: len(posted), dispatched: int(handled.Load())}
	for _, r := range rooms {
		st.replied += len(emu.AgentMessages(r.ID))
	}
	for _, id := range posted {
		switch s, _ := emu.Status(id); s {
		case bandemu.StatusProcessed:
			st.processed++
		case bandemu.StatusFailed:
			st.failed++
		}
	}
	qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	if s, err := js.Stream(qctx, subjects.StreamName("bridge", subjects.StreamEvents)); err == nil {
		if info, err := s.Info(qctx, jetstream.WithSubjectFilter("bridge.evt.band.demo.*.message_created")); err == nil {
			for _, n := range info.State.Subjects {
				st.stored += int(n)
			}
		}
	}
	return st
}

// progress prints one updating line on a terminal, a line a second elsewhere.
type progress struct {
	w    io.Writer
	tty  bool
	last time.Time
}

func newProgress(w io.Writer) *progress {
	f, ok := w.(*os.File)
	tty := false
	if ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	return &progress{w: w, tty: tty}
}

func (p *progress) line(st demoCounts, total int, el time.Duration, final bool) {
	if !p.tty && !final && time.Since(p.last) < time.Second {
		return
	}
	p.last = time.Now()
	rate := float64(st.processed) / max(el.Seconds(), 0.001)
	s := fmt.Sprintf("%5.1fs  posted %d/%d  stored %d  dispatched %d  replied %d  processed %d  failed %d  %.1f msg/s",
		el.Seconds(), st.posted, total, st.stored, st.dispatched, st.replied, st.processed, st.failed, rate)
	switch {
	case p.tty && final:
		fmt.Fprintf(p.w, "\r\033[K%s\n", s)
	case p.tty:
		fmt.Fprintf(p.w, "\r\033[K%s", s)
	default:
		fmt.Fprintln(p.w, s)
	}
}

func demoSummary(w io.Writer, st demoCounts, total int, el time.Duration, info bridge.Info) error {
	fmt.Fprintf(w, "\n%d of %d messages processed in %.1fs (%d failed): every user message reached NATS, a worker answered it,\n"+
		"and the bridge posted the reply and marked the message processed on the platform.\n\n", st.processed, total, el.Seconds(), st.failed)
	fmt.Fprintf(w, `Try next:
  watch the subjects      nats --server <url> sub 'bridge.>'        (while the demo runs: --duration 5m)
  plug in your worker     go run ./cmd/bridge demo --no-worker --duration 5m
                          go run ./examples/workers/go/dispatch --nats <url> --conn demo
  a real Band agent       go run ./cmd/bridge run --config config.example.toml   (BAND_API_KEY, settings.agent_id)
  the contract            docs/workers.md, docs/contract.md
`)
	_ = info
	if st.processed != total {
		return fmt.Errorf("%d of %d messages processed", st.processed, total)
	}
	return nil
}

// freeAddr returns addr if it can be listened on, else a free port on the
// same host.
func freeAddr(addr string) string {
	ln, err := net.Listen("tcp", addr)
	if err == nil {
		_ = ln.Close()
		return addr
	}
	host, _, _ := net.SplitHostPort(addr)
	return net.JoinHostPort(host, "0")
}
