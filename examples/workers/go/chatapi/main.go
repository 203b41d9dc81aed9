// Command chatapi is a worker that asks an agent of the Chat API a
// question and prints the streamed answer as it arrives: it publishes a
// durable chat command to P.cmd.chatapi.<conn>.<agent id>.chat, prints
// each text_delta event of that command from P.evt.chatapi.<conn>.<agent
// id>.>, and ends with the command's result (the message_completed data).
//
// Against the demo (go run ./cmd/bridge demo --platform chatapi --no-worker
// --duration 5m, which prints the agent id):
//
//	go run ./examples/workers/go/chatapi --conn demo --agent <agent id> "where is my order?"
//
// docs/platforms/chatapi.md describes the commands and events.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bridgeworks/bridge/subjects"
)

// config is what the flags set.
type config struct {
	natsURL, prefix, conn, agent, question string
	timeout                                time.Duration
}

func main() {
	var c config
	flag.StringVar(&c.natsURL, "nats", nats.DefaultURL, "NATS server URL")
	flag.StringVar(&c.prefix, "prefix", subjects.DefaultPrefix, "subject prefix (the bridge's nats.prefix)")
	flag.StringVar(&c.conn, "conn", "", "chatapi connection name from the bridge config (required)")
	flag.StringVar(&c.agent, "agent", "", "id of the agent to ask (required)")
	flag.DurationVar(&c.timeout, "timeout", 2*time.Minute, "give up after this long")
	flag.Parse()
	c.question = strings.Join(flag.Args(), " ")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, c, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "chatapi worker:", err)
		os.Exit(1)
	}
}

// run asks c.question and prints the answer's fragments to out.
func run(ctx context.Context, c config, out io.Writer) error {
	switch {
	case c.conn == "":
		return errors.New("--conn is required")
	case c.agent == "":
		return errors.New("--agent is required")
	case strings.TrimSpace(c.question) == "":
		return errors.New("a question is required (the arguments after the flags)")
	}
	if c.timeout <= 0 {
		c.timeout = 2 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	nc, err := nats.Connect(c.natsURL)
	if err != nil {
		return fmt.Errorf("nats: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	id := fmt.Sprintf("ask-%d", time.Now().UnixNano())
	room := subjects.EscapeToken(c.agent)
	base := c.prefix + ".%s.chatapi." + c.conn + "." + room

	// Subscribe before publishing: the events and the result are core NATS
	// messages too, and the fragments come as the agent writes them.
	msgs := make(chan *nats.Msg, 256)
	esub, err := nc.ChanSubscribe(fmt.Sprintf(base, "evt")+".>", msgs)
	if err != nil {
		return err
	}
	defer func() { _ = esub.Unsubscribe() }()
	results := make(chan *nats.Msg, 4)
	rsub, err := nc.ChanSubscribe(fmt.Sprintf(base, "res")+".chat", results)
	if err != nil {
		return err
	}
	defer func() { _ = rsub.Unsubscribe() }()
	if err := nc.Flush(); err != nil {
		return err
	}

	body, _ := json.Marshal(map[string]any{"message": c.question})
	m := nats.NewMsg(fmt.Sprintf(base, "cmd") + ".chat")
	m.Data = body
	m.Header.Set(subjects.HeaderMsgID, id) // a chat is never sent twice: the bridge drops a repeat
	if _, err := js.PublishMsg(ctx, m); err != nil {
		return fmt.Errorf("publish chat: %w", err)
	}
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("no answer: %w", ctx.Err())
		case em := <-msgs:
			ev, err := subjects.DecodeEvent(em.Data)
			if err != nil || ev.CommandID != id {
				continue
			}
			var d struct {
				Index int    `json:"index"`
				Text  string `json:"text"`
			}
			_ = json.Unmarshal(ev.Data, &d)
			if strings.HasSuffix(em.Subject, ".text_delta") {
				fmt.Fprintf(out, "fragment %d: %q\n", d.Index, d.Text)
			}
		case rm := <-results:
			var r subjects.Result
			if err := json.Unmarshal(rm.Data, &r); err != nil || r.CommandID != id {
				continue
			}
			if !r.OK {
				if r.Error != nil {
					return fmt.Errorf("chat: %s (%s)", r.Error.Message, r.Error.Code)
				}
				return fmt.Errorf("chat: failed with status %d", r.Status)
			}
			var done struct {
				Text      string `json:"text"`
				Fragments int    `json:"fragments"`
			}
			_ = json.Unmarshal(r.Data, &done)
			fmt.Fprintf(out, "answer (%d fragments): %s\n", done.Fragments, done.Text)
			return nil
		}
	}
}
