package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/bridgeworks/bridge/emulator/chatapiemu"
	"github.com/bridgeworks/bridge/subjects"
)

// runDemoChatAPI: a worker asks each of --rooms agents of the Chat API
// emulator --messages questions with the chat command; every answer is
// streamed and arrives on NATS as text_delta events, then one
// message_completed.
func runDemoChatAPI(ctx context.Context, o demoOptions, stdout, stderr io.Writer) error {
	emu := chatapiemu.New(chatapiemu.Options{AgentName: "Assistant 1"})
	if _, err := emu.Start(); err != nil {
		return fmt.Errorf("chatapi emulator: %w", err)
	}
	defer emu.Close()
	for i := 2; i <= o.rooms; i++ {
		emu.AddAgent(fmt.Sprintf("Assistant %d", i))
	}
	info, stop, err := startDemoBridge(ctx, o.natsAddr, fmt.Sprintf(`
[[connection]]
name = %q
platform = "chatapi"
[connection.settings]
base_url = %q
api_key_env = "DEMO_CHATAPI_KEY"
rate_limit = 100.0
rate_burst = 20
`, demoConn, emu.BaseURL()), map[string]string{"DEMO_CHATAPI_KEY": emu.APIKey()}, stderr)
	if err != nil {
		return err
	}
	defer stop()

	agents := emu.Agents()
	fmt.Fprintf(stdout, "bridge demo: %d agents x %d streamed chats on the Chat API emulator\n", len(agents), o.messages)
	fmt.Fprintf(stdout, "  NATS for workers: %s   status: http://%s/status\n\n", info.NATSClientURL, info.HTTPAddr)
	if o.noWorker {
		fmt.Fprintf(stdout, "  --no-worker: ask a question yourself (agent %s), e.g.\n"+
			"    nats --server %s sub 'bridge.evt.chatapi.demo.>'\n"+
			"    nats --server %s req bridge.rpc.chatapi.demo.chat '{\"room\": \"%s\", \"message\": \"where is my order?\"}'\n"+
			"  or with the example worker:\n"+
			"    go run ./examples/workers/go/chatapi --nats %s --conn demo --agent %s \"where is my order?\"\n",
			agents[0].ID, info.NATSClientURL, info.NATSClientURL, agents[0].ID, info.NATSClientURL, agents[0].ID)
		<-ctx.Done()
		return nil
	}
	c, err := newDemoClient(info.Conn, "chatapi")
	if err != nil {
		return err
	}
	defer c.close()
	d := &chatDemo{o: o, c: c, emu: emu, agents: len(agents), screen: newDemoScreen(stdout), chats: map[string]*chatSeen{}}
	stopWatch, err := watchDemoEvents(ctx, c.js, "chatapi", d.event)
	if err != nil {
		return err
	}
	defer stopWatch()

	el, err := runDemoFlows(ctx, d.screen, len(agents), 100*time.Millisecond,
		func(ctx context.Context, i int) error { return d.agent(ctx, i, agents[i]) }, d.line)
	d.screen.show(d.line(el), true)
	return d.summary(stdout, el, err)
}

type chatDemo struct {
	o      demoOptions
	c      *demoClient
	emu    *chatapiemu.Server
	agents int
	screen *demoScreen

	mu                         sync.Mutex
	asked, answered, fragments int
	completed, failed          int
	chats                      map[string]*chatSeen // command id → what NATS showed
	traced                     string               // the chat whose fragments are printed
	latest                     string               // the text of the chat streaming last
}

// chatSeen is one chat as its events showed it.
type chatSeen struct {
	deltas    int
	text      string
	completed bool
	final     string // message_completed's text
	fragments int    // message_completed's fragments
}

func (d *chatDemo) event(name string, ev subjects.Event) {
	if ev.CommandID == "" {
		return
	}
	var data struct {
		Index     int    `json:"index"`
		Text      string `json:"text"`
		Fragments int    `json:"fragments"`
		Reason    string `json:"reason"`
	}
	_ = json.Unmarshal(ev.Data, &data)
	d.mu.Lock()
	defer d.mu.Unlock()
	ch := d.chats[ev.CommandID]
	if ch == nil {
		ch = &chatSeen{}
		d.chats[ev.CommandID] = ch
	}
	if d.traced == "" {
		d.traced = ev.CommandID
		d.screen.say("the first answer, fragment by fragment as it arrives on bridge.evt.chatapi.demo.<agent>.<event>:")
	}
	trace := ev.CommandID == d.traced
	switch name {
	case "text_delta":
		ch.deltas++
		ch.text += data.Text
		d.fragments++
		d.latest = ch.text
		if trace {
			d.screen.say("  %-17s #%-2d %-18s  so far %s", name, data.Index, quote(data.Text, 18), quote(ch.text, 50))
		}
	case "message_completed":
		ch.completed, ch.final, ch.fragments = true, data.Text, data.Fragments
		d.completed++
		if trace {
			d.screen.say("  %-17s %d fragments: %s\n", name, data.Fragments, quote(data.Text, 80))
		}
	case "message_failed":
		d.failed++
		d.screen.say("  chat %s failed: %s", ev.CommandID, data.Reason)
	}
}

// agent asks agent a its questions one after the other, each a streamed
// chat, and checks that NATS showed every fragment and the whole answer.
func (d *chatDemo) agent(ctx context.Context, i int, a chatapiemu.Agent) error {
	for j := range d.o.messages {
		q := demoQuestions[(i+j)%len(demoQuestions)]
		d.emu.SetScript(a.ID, chatapiemu.Script{Text: demoAnswer(q), FragmentDelay: 15 * time.Millisecond})
		d.mu.Lock()
		d.asked++
		d.mu.Unlock()
		r, err := d.c.do(ctx, a.ID, "chat", map[string]any{"message": q})
		if err != nil {
			return err
		}
		if err := resultError(r); err != nil {
			return err
		}
		var done struct {
			Text string `json:"text"`
		}
		_ = json.Unmarshal(r.Data, &done)
		var seen chatSeen
		if err := waitFor(ctx, "message_completed of "+r.CommandID, func() bool {
			d.mu.Lock()
			defer d.mu.Unlock()
			if ch := d.chats[r.CommandID]; ch != nil && ch.completed {
				seen = *ch
				return true
			}
			return false
		}); err != nil {
			return err
		}
		if seen.text != done.Text || seen.final != done.Text || seen.deltas != seen.fragments {
			return fmt.Errorf("chat %s: %d fragments on NATS make %q; message_completed says %d fragments, %q; the result %q",
				r.CommandID, seen.deltas, seen.text, seen.fragments, seen.final, done.Text)
		}
		d.mu.Lock()
		d.answered++
		d.mu.Unlock()
	}
	return nil
}

func (d *chatDemo) line(el time.Duration) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return fmt.Sprintf("%5.1fs  asked %d/%d  fragments on NATS %d  completed %d  failed %d  answered %d  %s",
		el.Seconds(), d.asked, d.agents*d.o.messages, d.fragments, d.completed, d.failed, d.answered, quote(d.latest, 40))
}

func (d *chatDemo) summary(w io.Writer, el time.Duration, flowErr error) error {
	d.mu.Lock()
	answered, fragments := d.answered, d.fragments
	d.mu.Unlock()
	total := d.agents * d.o.messages
	fmt.Fprintf(w, "\n%d of %d questions answered in %.1fs: each chat command streamed its answer, %d fragments arrived on\n"+
		"bridge.evt.chatapi.demo.<agent>.text_delta as they came, and one message_completed per chat carried the whole text.\n\n",
		answered, total, el.Seconds(), fragments)
	fmt.Fprint(w, `Try next:
  watch the subjects      nats --server <url> sub 'bridge.>'        (while the demo runs: --duration 5m)
  ask yourself            go run ./cmd/bridge demo --platform chatapi --no-worker --duration 5m
  the emulator alone      go run ./cmd/bridge emulate chatapi
  the platform            docs/platforms/chatapi.md
`)
	if flowErr != nil {
		return flowErr
	}
	if answered != total {
		return fmt.Errorf("%d of %d questions answered", answered, total)
	}
	return nil
}
