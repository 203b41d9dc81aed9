// Command dispatch is a managed-dispatch worker: it needs nothing but core
// NATS. The bridge sends each user message (a CloudEvents event) as a request
// to P.work.<platform>.<conn>.<room>.message_created; the worker answers
// "processing", then "processed" with the commands to run (here one
// send_message that echoes the text). The bridge runs them in the room's
// order, marks the message processed on the platform and retries or
// dead-letters it when no answer comes.
//
// The bridge needs a [[dispatch]] rule for the connection:
//
//	[[dispatch]]
//	connection = "support-bot"
//	events = ["message_created"]
//
// Run it with:
//
//	go run ./examples/workers/go/dispatch --conn support-bot
//
// Start as many as you like: they share the work through a queue group.
// docs/workers.md describes the contract.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bridgeworks/bridge/claimcheck"
	"github.com/bridgeworks/bridge/subjects"
)

// config is what the flags set.
type config struct {
	natsURL, prefix, platform, conn string
}

func main() {
	var c config
	flag.StringVar(&c.natsURL, "nats", nats.DefaultURL, "NATS server URL")
	flag.StringVar(&c.prefix, "prefix", subjects.DefaultPrefix, "subject prefix (the bridge's nats.prefix)")
	flag.StringVar(&c.platform, "platform", "band", "platform of the connection")
	flag.StringVar(&c.conn, "conn", "", "connection name from the bridge config (required)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, c, log.Default()); err != nil {
		fmt.Fprintln(os.Stderr, "dispatch worker:", err)
		os.Exit(1)
	}
}

// run answers work requests until ctx ends.
func run(ctx context.Context, c config, logger *log.Logger) error {
	if c.conn == "" {
		return errors.New("--conn is required: the connection name from the bridge config")
	}
	nc, err := nats.Connect(c.natsURL, nats.Name("example-dispatch-worker"),
		// Reconnect forever: a NATS restart must not stop the worker.
		nats.MaxReconnects(-1))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc) // only to fetch payloads sent by reference
	if err != nil {
		return err
	}

	// All rooms, one event. A queue group spreads requests over the workers.
	subject := fmt.Sprintf("%s.work.%s.%s.*.message_created", c.prefix, c.platform, c.conn)
	sub, err := nc.QueueSubscribeSync(subject, "echo-workers")
	if err != nil {
		return err
	}
	logger.Printf("answering %s", subject)
	for {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		handle(ctx, js, m, logger)
	}
}

// handle answers one work request. Requests are handled one at a time here;
// hand them to goroutines to work on several rooms at once (the bridge keeps
// each room's order by sending a room's next message only after this one's
// final reply).
func handle(ctx context.Context, js jetstream.JetStream, m *nats.Msg, logger *log.Logger) {
	ev, err := subjects.DecodeEvent(m.Data)
	if err != nil {
		respond(m, subjects.WorkReply{Status: subjects.WorkFailed, Error: err.Error()}) // retry:false: dead-lettered
		return
	}
	if ref, ok := ev.Ref(); ok {
		// Too large for one NATS message: the bridge kept the payload in the
		// connection's object store bucket and sent a reference.
		fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		ev.Data, err = claimcheck.Fetch(fctx, js, ref)
		cancel()
		if err != nil {
			respond(m, subjects.WorkReply{Status: subjects.WorkFailed, Error: "payload by reference: " + err.Error(), Retry: true})
			return
		}
	}
	// Optional: tells the bridge we are on it and restarts its timeout.
	respond(m, subjects.WorkReply{Status: subjects.WorkProcessing})

	var msg struct {
		Content    string `json:"content"`
		SenderID   string `json:"sender_id"`
		SenderType string `json:"sender_type"`
	}
	if err := json.Unmarshal(ev.Data, &msg); err != nil {
		respond(m, subjects.WorkReply{Status: subjects.WorkFailed, Error: "message_created without a message: " + err.Error()})
		return
	}
	reply := subjects.WorkReply{Status: subjects.WorkProcessed}
	if msg.SenderType != "Agent" { // never answer another agent: two echo bots would talk forever
		// Band requires a mention on every text message: mention the sender.
		args, _ := json.Marshal(map[string]any{
			"content":  "echo: " + msg.Content,
			"mentions": []map[string]string{{"id": msg.SenderID}},
		})
		reply.Commands = []subjects.CommandSpec{{Command: "send_message", Args: args}}
	}
	respond(m, reply)
	logger.Printf("answered %s in room %s", ev.ID, ev.Room)
}

func respond(m *nats.Msg, r subjects.WorkReply) {
	b, _ := json.Marshal(r)
	_ = m.Respond(b) // a lost reply is retried by the bridge after its timeout
}
