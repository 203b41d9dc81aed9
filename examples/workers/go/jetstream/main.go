// Command jetstream is a worker that reads events from JetStream itself and
// publishes durable commands, without managed dispatch. For each user
// message it publishes mark_processing, send_message (an echo that mentions
// the sender) and mark_processed to P.cmd.<platform>.<conn>.<room>.<command>,
// waits for the three PubAcks, then acks the event.
//
// Every command carries a Nats-Msg-Id derived from the event id, so when the
// event is redelivered (the worker crashed before its ack) the commands it
// publishes again are dropped as duplicates: the user gets one answer.
//
// Do not also configure [[dispatch]] for the same connection: both would
// answer. Run it with:
//
//	go run ./examples/workers/go/jetstream --conn support-bot
//
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
		fmt.Fprintln(os.Stderr, "jetstream worker:", err)
		os.Exit(1)
	}
}

// run consumes message_created events until ctx ends.
func run(ctx context.Context, c config, logger *log.Logger) error {
	if c.conn == "" {
		return errors.New("--conn is required: the connection name from the bridge config")
	}
	nc, err := nats.Connect(c.natsURL, nats.Name("example-jetstream-worker"),
		// Reconnect forever: a NATS restart must not stop the worker.
		nats.MaxReconnects(-1))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}

	// A durable consumer remembers where we are across restarts. One message
	// in flight at a time keeps every room's order (shard by room, one
	// consumer per shard, to go faster).
	stream := subjects.StreamName(c.prefix, subjects.StreamEvents) // BRIDGE_EVENTS
	cons, err := js.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{
		Durable:       "echo-" + c.conn,
		FilterSubject: fmt.Sprintf("%s.evt.%s.%s.*.message_created", c.prefix, c.platform, c.conn),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       30 * time.Second,
		MaxAckPending: 1,
	})
	if err != nil {
		return fmt.Errorf("consumer on %s (is the bridge running?): %w", stream, err)
	}
	msgs, err := cons.Messages()
	if err != nil {
		return err
	}
	defer msgs.Stop()
	logger.Printf("consuming %s", cons.CachedInfo().Config.FilterSubject)
	for {
		m, err := msgs.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		handle(ctx, js, c.prefix, m, logger)
	}
}

// handle answers one event and settles it.
func handle(ctx context.Context, js jetstream.JetStream, prefix string, m jetstream.Msg, logger *log.Logger) {
	ev, err := subjects.DecodeEvent(m.Data())
	if err != nil {
		_ = m.TermWithReason("not an event: " + err.Error()) // poison: never redeliver
		return
	}
	var msg struct {
		ID         string `json:"id"`
		Content    string `json:"content"`
		SenderID   string `json:"sender_id"`
		SenderType string `json:"sender_type"`
	}
	if err := json.Unmarshal(ev.Data, &msg); err != nil || msg.ID == "" {
		_ = m.TermWithReason("message_created without a message id")
		return
	}
	mark := map[string]string{"message_id": msg.ID}
	cmds := []subjects.CommandSpec{{Command: "mark_processing", Args: jsonArgs(mark)}}
	if msg.SenderType != "Agent" { // never answer another agent
		cmds = append(cmds, subjects.CommandSpec{Command: "send_message", Args: jsonArgs(map[string]any{
			"content":  "echo: " + msg.Content,
			"mentions": []map[string]string{{"id": msg.SenderID}}, // Band requires a mention
		})})
	}
	cmds = append(cmds, subjects.CommandSpec{Command: "mark_processed", Args: jsonArgs(mark)})

	for _, cmd := range cmds {
		out := nats.NewMsg(subjects.Subject{
			Prefix: prefix, Kind: subjects.KindCommand, Platform: ev.Platform,
			Conn: ev.Connection, Room: ev.Room, Name: cmd.Command,
		}.String()) // e.g. bridge.cmd.band.support-bot.<room>.send_message
		out.Data = cmd.Args
		// Same event, same ids: a redelivered event cannot answer twice.
		out.Header.Set(subjects.HeaderMsgID, ev.ID+":"+cmd.Command)
		if _, err := js.PublishMsg(ctx, out); err != nil {
			logger.Printf("publish %s for %s: %v; trying again later", cmd.Command, ev.ID, err)
			_ = m.NakWithDelay(5 * time.Second)
			return
		}
	}
	// Stored: the bridge will run the commands in order. Now the event is done.
	if err := m.DoubleAck(ctx); err != nil {
		logger.Printf("ack %s: %v (it will come again; its commands will not run twice)", ev.ID, err)
		return
	}
	logger.Printf("answered %s in room %s", ev.ID, ev.Room)
}

func jsonArgs(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}
