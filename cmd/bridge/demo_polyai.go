package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/bridgeworks/bridge/emulator/polyaiemu"
	"github.com/bridgeworks/bridge/subjects"
)

// runDemoPolyAI: a worker opens --rooms end-user sessions with the
// scripted PolyAI agent, sends --messages questions in each, reads the
// agent's replies from the events stream and ends the sessions.
func runDemoPolyAI(ctx context.Context, o demoOptions, stdout, stderr io.Writer) error {
	emu := polyaiemu.New(polyaiemu.Options{AgentName: "Aria",
		Reply: func(text string) polyaiemu.AgentMessage { return polyaiemu.AgentMessage{Text: demoAnswer(text)} }})
	url, err := emu.Start()
	if err != nil {
		return fmt.Errorf("polyai emulator: %w", err)
	}
	defer emu.Close()
	info, stop, err := startDemoBridge(ctx, o.natsAddr, fmt.Sprintf(`
[[connection]]
name = %q
platform = "polyai"
[connection.settings]
base_url = %q
host = %q
connector_token_env = "DEMO_POLYAI_TOKEN"
`, demoConn, url, emu.Host()), map[string]string{"DEMO_POLYAI_TOKEN": emu.ConnectorToken()}, stderr)
	if err != nil {
		return err
	}
	defer stop()

	fmt.Fprintf(stdout, "bridge demo: %d sessions x %d messages with the scripted agent of the PolyAI emulator\n", o.rooms, o.messages)
	fmt.Fprintf(stdout, "  NATS for workers: %s   status: http://%s/status\n\n", info.NATSClientURL, info.HTTPAddr)
	if o.noWorker {
		fmt.Fprintf(stdout, "  --no-worker: open a session and talk in it yourself, e.g.\n"+
			"    nats --server %s req bridge.rpc.polyai.demo.create_session '{}'\n"+
			"    nats --server %s req bridge.rpc.polyai.demo.send_message '{\"room\": \"<session_id>\", \"text\": \"where is my order?\"}'\n"+
			"    nats --server %s sub 'bridge.evt.polyai.demo.>'\n", info.NATSClientURL, info.NATSClientURL, info.NATSClientURL)
		<-ctx.Done()
		return nil
	}
	c, err := newDemoClient(info.Conn, "polyai")
	if err != nil {
		return err
	}
	defer c.close()
	d := &polyaiDemo{o: o, c: c, screen: newDemoScreen(stdout), replies: map[string]int{}, ended: map[string]string{}}
	stopWatch, err := watchDemoEvents(ctx, c.js, "polyai", d.event)
	if err != nil {
		return err
	}
	defer stopWatch()

	el, err := runDemoFlows(ctx, d.screen, o.rooms, 250*time.Millisecond, d.session, d.line)
	d.screen.show(d.line(el), true)
	return d.summary(stdout, el, err)
}

type polyaiDemo struct {
	o      demoOptions
	c      *demoClient
	screen *demoScreen

	mu                    sync.Mutex
	created, sent, closed int
	events, agentMsgs     int
	replies               map[string]int    // session → agent messages on NATS
	ended                 map[string]string // session → session_end reason
	traced                string            // the session whose events are printed
	tracedLines           int
}

// polyaiWire is the part of PolyAI's event envelope the demo shows.
type polyaiWire struct {
	Payload struct {
		Text   string `json:"text"`
		Reason string `json:"reason"`
	} `json:"payload"`
}

func (d *polyaiDemo) event(name string, ev subjects.Event) {
	var w polyaiWire
	_ = json.Unmarshal(ev.Data, &w)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.events++
	switch name {
	case "poly_agent_message":
		d.replies[ev.Room]++
		d.agentMsgs++
	case "session_end":
		d.ended[ev.Room] = w.Payload.Reason
	}
	if ev.Room != d.traced || (d.tracedLines >= 12 && name != "session_end") {
		return
	}
	d.tracedLines++
	line := fmt.Sprintf("  evt …%s.%s", subjects.EscapeToken(ev.Room), name)
	switch {
	case w.Payload.Text != "":
		line += "  " + quote(w.Payload.Text, 60)
	case w.Payload.Reason != "":
		line += "  " + w.Payload.Reason
	}
	if ev.Transient {
		line += "  (transient)"
	}
	if d.tracedLines == 12 && name != "session_end" {
		line += "\n  … (the other events of this session are counted below)"
	}
	d.screen.say("%s", line)
}

// session is one end user: open a session, wait for the greeting, ask
// the questions one at a time (each answered on NATS), end it.
func (d *polyaiDemo) session(ctx context.Context, i int) error {
	r, err := d.c.do(ctx, "", "create_session", map[string]any{})
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
	if d.traced == "" {
		d.traced = sid
		d.screen.say("session %s: its events as they arrive on bridge.evt.polyai.demo.<session>.<event>", sid)
	}
	d.mu.Unlock()
	replies := func(n int) func() bool {
		return func() bool { d.mu.Lock(); defer d.mu.Unlock(); return d.replies[sid] >= n }
	}
	if err := waitFor(ctx, "the agent's greeting in "+sid, replies(1)); err != nil {
		return err
	}
	for j := range d.o.messages {
		q := demoQuestions[(i+j)%len(demoQuestions)]
		r, err := d.c.do(ctx, sid, "send_message", map[string]any{"text": q})
		if err != nil {
			return err
		}
		if err := resultError(r); err != nil {
			return err
		}
		d.mu.Lock()
		d.sent++
		d.mu.Unlock()
		if err := waitFor(ctx, "the agent's reply in "+sid, replies(j+2)); err != nil {
			return err
		}
	}
	if r, err = d.c.do(ctx, sid, "end_session", map[string]any{}); err != nil {
		return err
	}
	// The session may end before its echo is matched: ended is what was asked.
	if err := resultError(r); err != nil && (r.Error == nil || r.Error.Code != "session_ended") {
		return err
	}
	if err := waitFor(ctx, "session_end of "+sid, func() bool { d.mu.Lock(); defer d.mu.Unlock(); return d.ended[sid] != "" }); err != nil {
		return err
	}
	d.mu.Lock()
	d.closed++
	d.mu.Unlock()
	return nil
}

func (d *polyaiDemo) line(el time.Duration) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return fmt.Sprintf("%5.1fs  sessions %d/%d  sent %d/%d  agent messages on NATS %d  events %d  ended %d/%d",
		el.Seconds(), d.created, d.o.rooms, d.sent, d.o.rooms*d.o.messages, d.agentMsgs, d.events, d.closed, d.o.rooms)
}

func (d *polyaiDemo) summary(w io.Writer, el time.Duration, flowErr error) error {
	d.mu.Lock()
	sent, closed, msgs := d.sent, d.closed, d.agentMsgs
	d.mu.Unlock()
	total := d.o.rooms * d.o.messages
	fmt.Fprintf(w, "\n%d of %d messages answered in %.1fs, %d of %d sessions ended: the worker opened each session with\n"+
		"create_session, each message reached the PolyAI agent through send_message, the agent's %d messages\n"+
		"(greetings and replies) arrived on bridge.evt.polyai.demo.<session>.poly_agent_message, and end_session closed it.\n\n",
		sent, total, el.Seconds(), closed, d.o.rooms, msgs)
	fmt.Fprint(w, `Try next:
  watch the subjects      nats --server <url> sub 'bridge.>'        (while the demo runs: --duration 5m)
  talk in a session       go run ./cmd/bridge demo --platform polyai --no-worker --duration 5m
  the emulator alone      go run ./cmd/bridge emulate polyai
  the platform            docs/platforms/polyai.md
`)
	if flowErr != nil {
		return flowErr
	}
	if sent != total || closed != d.o.rooms {
		return fmt.Errorf("%d of %d messages answered, %d of %d sessions ended", sent, total, closed, d.o.rooms)
	}
	return nil
}
