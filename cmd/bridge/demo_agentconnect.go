package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/bridgeworks/bridge/emulator/agentconnectemu"
	"github.com/bridgeworks/bridge/subjects"
)

// demoCooldown is the rest the demo asks of the first session's agent.
const demoCooldown = time.Second

// runDemoAgentConnect: a worker opens --rooms human_agent sessions on the
// AgentConnect emulator, sends --messages messages in each and shows the
// AI's replies; the first session's agent is put in cooldown once, and
// the bridge holds that session's next message until it is over.
func runDemoAgentConnect(ctx context.Context, o demoOptions, stdout, stderr io.Writer) error {
	emu := agentconnectemu.New(agentconnectemu.Options{NoRateLimits: true, MaxSessionsPerUser: -1, MaxTurns: -1,
		TokenBudget: -1, ReplyDelay: 50 * time.Millisecond, Reply: demoAnswer,
		// After a cooldown the server's handler waits this long, says the
		// AI is slow, and only then reads the socket again: longer than
		// the cooldown, as on the real server (30s), so the held message
		// goes out before that notice; short, so the demo does not drag.
		ReplyTimeout: 2 * demoCooldown})
	url, err := emu.Start()
	if err != nil {
		return fmt.Errorf("agentconnect emulator: %w", err)
	}
	defer emu.Close()
	info, stop, err := startDemoBridge(ctx, o.natsAddr, fmt.Sprintf(`
[[connection]]
name = %q
platform = "agentconnect"
[connection.settings]
base_url = %q
username_env = "DEMO_AC_USERNAME"
password_env = "DEMO_AC_PASSWORD"
`, demoConn, url), map[string]string{"DEMO_AC_USERNAME": agentconnectemu.DefaultUser, "DEMO_AC_PASSWORD": emu.Password()}, stderr)
	if err != nil {
		return err
	}
	defer stop()

	fmt.Fprintf(stdout, "bridge demo: %d sessions x %d messages with the AI agents of the AgentConnect emulator\n", o.rooms, o.messages)
	fmt.Fprintf(stdout, "  NATS for workers: %s   status: http://%s/status\n\n", info.NATSClientURL, info.HTTPAddr)
	if o.noWorker {
		fmt.Fprintf(stdout, "  --no-worker: open a session and talk in it yourself, e.g.\n"+
			"    nats --server %s req bridge.rpc.agentconnect.demo.create_session '{\"session_type\": \"human_agent\", \"agents\": {\"ai\": {\"provider\": \"groq\"}}}'\n"+
			"    nats --server %s req bridge.rpc.agentconnect.demo.send_message '{\"room\": \"<session_id>\", \"content\": \"where is my order?\"}'\n",
			info.NATSClientURL, info.NATSClientURL)
		<-ctx.Done()
		return nil
	}
	c, err := newDemoClient(info.Conn, "agentconnect")
	if err != nil {
		return err
	}
	defer c.close()
	d := &acDemo{o: o, c: c, emu: emu, screen: newDemoScreen(stdout), events: map[string]int{}}
	stopWatch, err := watchDemoEvents(ctx, c.js, "agentconnect", d.event)
	if err != nil {
		return err
	}
	defer stopWatch()

	el, err := runDemoFlows(ctx, d.screen, o.rooms, 250*time.Millisecond, d.session, d.line)
	if err == nil {
		// A reply's text event is stored apart from its command's result:
		// give the last ones a moment to arrive.
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_ = waitFor(wctx, "text events", func() bool {
			d.mu.Lock()
			defer d.mu.Unlock()
			return d.events["text"] >= d.answered
		})
		cancel()
	}
	d.screen.show(d.line(el), true)
	return d.summary(stdout, el, err)
}

type acDemo struct {
	o      demoOptions
	c      *demoClient
	emu    *agentconnectemu.Server
	screen *demoScreen

	mu                      sync.Mutex
	created, sent, answered int
	closed                  int
	held                    time.Duration  // how long the cooldown held the first session
	events                  map[string]int // event name → count on NATS
}

func (d *acDemo) event(name string, _ subjects.Event) {
	d.mu.Lock()
	d.events[name]++
	d.mu.Unlock()
}

// session is one user talking to one AI agent: create, send the messages
// one at a time (each result is the AI's reply), end.
func (d *acDemo) session(ctx context.Context, i int) error {
	r, err := d.c.do(ctx, "", "create_session", map[string]any{"session_type": "human_agent",
		"agents": map[string]any{"ai": map[string]string{"provider": "groq"}}})
	if err != nil {
		return err
	}
	if err := resultError(r); err != nil {
		return err
	}
	var s struct {
		SessionID string `json:"session_id"`
	}
	if err := json.Unmarshal(r.Data, &s); err != nil || s.SessionID == "" {
		return fmt.Errorf("create_session: no session_id in %s", r.Data)
	}
	sid := s.SessionID
	d.mu.Lock()
	d.created++
	d.mu.Unlock()
	for j := range d.o.messages {
		q := demoQuestions[(i+j)%len(demoQuestions)]
		if i == 0 && j == min(1, d.o.messages-1) {
			d.emu.ForceCooldown(sid, demoCooldown)
		}
		d.mu.Lock()
		d.sent++
		d.mu.Unlock()
		r, err := d.c.do(ctx, sid, "send_message", map[string]any{"content": q})
		if err != nil {
			return err
		}
		if !r.OK && r.Error != nil && r.Error.Code == "cooldown" {
			d.screen.say("%s: the agent is in cooldown: retryable, retry_after_ms %d; the bridge holds the session's next command that long",
				sid, r.Error.RetryAfterMs)
			at := time.Now()
			if r, err = d.c.do(ctx, sid, "send_message", map[string]any{"content": q}); err != nil {
				return err
			}
			d.mu.Lock()
			d.held = time.Since(at)
			d.mu.Unlock()
			d.screen.say("%s: sent again at once, answered after %.1fs (the other sessions went on)", sid, time.Since(at).Seconds())
		}
		if err := resultError(r); err != nil {
			return err
		}
		var reply struct {
			Content string `json:"content"`
			Sender  string `json:"sender"`
		}
		_ = json.Unmarshal(r.Data, &reply)
		if i == 0 {
			d.screen.say("%s  user: %s\n%*s  %s: %s", sid, quote(q, 50), len(sid), "", reply.Sender, quote(reply.Content, 80))
		}
		d.mu.Lock()
		d.answered++
		d.mu.Unlock()
	}
	if r, err = d.c.do(ctx, sid, "end_session", map[string]any{}); err != nil {
		return err
	}
	if err := resultError(r); err != nil {
		return err
	}
	d.mu.Lock()
	d.closed++
	d.mu.Unlock()
	return nil
}

func (d *acDemo) line(el time.Duration) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return fmt.Sprintf("%5.1fs  sessions %d/%d  sent %d/%d  answered %d  text events on NATS %d  cooldowns %d  ended %d/%d",
		el.Seconds(), d.created, d.o.rooms, d.sent, d.o.rooms*d.o.messages, d.answered, d.events["text"], d.events["cooldown"], d.closed, d.o.rooms)
}

func (d *acDemo) summary(w io.Writer, el time.Duration, flowErr error) error {
	d.mu.Lock()
	answered, closed, held, texts := d.answered, d.closed, d.held, d.events["text"]
	d.mu.Unlock()
	total := d.o.rooms * d.o.messages
	fmt.Fprintf(w, "\n%d of %d messages answered in %.1fs, %d of %d sessions ended: each send_message's result was the AI's reply,\n"+
		"%d text frames arrived on bridge.evt.agentconnect.demo.<session>.text, and a cooldown held one session for %.1fs.\n\n",
		answered, total, el.Seconds(), closed, d.o.rooms, texts, held.Seconds())
	fmt.Fprint(w, `Try next:
  watch the subjects      nats --server <url> sub 'bridge.>'        (while the demo runs: --duration 5m)
  talk in a session       go run ./cmd/bridge demo --platform agentconnect --no-worker --duration 5m
  the emulator alone      go run ./cmd/bridge emulate agentconnect
  the platform            docs/platforms/agentconnect.md
`)
	if flowErr != nil {
		return flowErr
	}
	if answered != total || closed != d.o.rooms {
		return fmt.Errorf("%d of %d messages answered, %d of %d sessions ended", answered, total, closed, d.o.rooms)
	}
	return nil
}
