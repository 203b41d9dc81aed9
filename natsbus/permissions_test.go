package natsbus_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bridgeworks/bridge/internal/testutil"
	"github.com/bridgeworks/bridge/natsbus"
)

const (
	docFile      = "../docs/security.md"
	workerInbox  = "_INBOX_support-bot"
	workerDur    = "worker-support-bot"
	bridgePass   = "bridge-pw-5f2e"
	workerPass   = "worker-pw-91ac"
	ownCmd       = "bridge.cmd.band.support-bot.room1.send_message"
	otherCmd     = "bridge.cmd.band.other-bot.room1.send_message"
	ownEvt       = "bridge.evt.band.support-bot.room1.message_created"
	otherEvt     = "bridge.evt.band.other-bot.room1.message_created"
	ownWork      = "bridge.work.band.support-bot.room1.message_created"
	violationMsg = "permissions violation"
)

// startDocumentedServer runs nats-server with exactly the documented
// config; the test only defines the password variables and moves the
// listener and the store to test places.
func startDocumentedServer(t *testing.T) *server.Server {
	t.Helper()
	return testutil.DocumentedNATS(t, docFile, map[string]string{"BRIDGE_NATS_PASSWORD": bridgePass, "SUPPORT_BOT_NATS_PASSWORD": workerPass})
}

// asyncErrors collects a connection's asynchronous errors (permission
// violations arrive that way).
type asyncErrors struct {
	mu   sync.Mutex
	errs []error
}

func (a *asyncErrors) handler(_ *nats.Conn, _ *nats.Subscription, err error) {
	a.mu.Lock()
	a.errs = append(a.errs, err)
	a.mu.Unlock()
}

// waitViolation waits for a permissions violation naming subject.
func (a *asyncErrors) waitViolation(t *testing.T, op, subject string) {
	t.Helper()
	testutil.Eventually(t, 5*time.Second, func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		for _, err := range a.errs {
			s := strings.ToLower(err.Error())
			if strings.Contains(s, violationMsg) && strings.Contains(s, strings.ToLower(op)) && strings.Contains(err.Error(), subject) {
				return true
			}
		}
		return false
	}, "permissions violation for %s %s", op, subject)
}

func TestDocumentedPermissions(t *testing.T) {
	t.Parallel()
	srv := startDocumentedServer(t)
	url := srv.ClientURL()
	ctx := testutil.Context(t, 30*time.Second)

	// The bridge user provisions the streams and publishes events of two
	// connections.
	bridge := mustConnect(t, natsbus.Options{URL: url, User: "bridge", Password: bridgePass})
	bjs := jetStream(t, bridge)
	if err := natsbus.EnsureStreams(ctx, bjs, natsbus.StreamOptions{Prefix: "bridge"}); err != nil {
		t.Fatalf("bridge user cannot provision streams: %v", err)
	}
	for _, subj := range []string{ownEvt, otherEvt} {
		if _, err := bjs.Publish(ctx, subj, []byte(`{"n":1}`)); err != nil {
			t.Fatalf("bridge user cannot publish %s: %v", subj, err)
		}
	}
	// The operator's step: the worker's durable pull consumer.
	if _, err := bjs.CreateOrUpdateConsumer(ctx, "BRIDGE_EVENTS", jetstream.ConsumerConfig{
		Durable: workerDur, FilterSubject: "bridge.evt.band.support-bot.>", AckPolicy: jetstream.AckExplicitPolicy,
	}); err != nil {
		t.Fatalf("create the worker's consumer: %v", err)
	}

	// The worker, connected as the doc shows.
	var async asyncErrors
	worker, err := nats.Connect(url, nats.UserInfo("support-bot-worker", workerPass), nats.CustomInboxPrefix(workerInbox),
		nats.ErrorHandler(async.handler))
	if err != nil {
		t.Fatalf("worker connect: %v", err)
	}
	t.Cleanup(worker.Close)
	wjs := jetStream(t, worker)

	t.Run("own command is stored", func(t *testing.T) {
		ack, err := wjs.Publish(ctx, ownCmd, []byte(`{"content":"hi","mentions":[{"id":"u1"}]}`))
		if err != nil {
			t.Fatalf("publish own command: %v", err)
		}
		if ack.Stream != "BRIDGE_COMMANDS" {
			t.Fatalf("stored in %q", ack.Stream)
		}
	})

	t.Run("other connection's command is refused", func(t *testing.T) {
		if err := worker.Publish(otherCmd, []byte(`{"content":"forged"}`)); err != nil {
			t.Fatal(err)
		}
		async.waitViolation(t, "publish", otherCmd)
		// A JetStream publish gets no PubAck, and nothing is stored.
		short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		if _, err := wjs.Publish(short, otherCmd, []byte(`{"content":"forged"}`)); err == nil {
			t.Fatal("JetStream publish of another connection's command was acked")
		}
		st, err := bjs.Stream(ctx, "BRIDGE_COMMANDS")
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(ctx, jetstream.WithSubjectFilter("bridge.cmd.>"))
		if err != nil {
			t.Fatal(err)
		}
		if n := info.State.Subjects[otherCmd]; n != 0 {
			t.Fatalf("%d forged commands stored on %s", n, otherCmd)
		}
		if n := info.State.Subjects[ownCmd]; n != 1 {
			t.Fatalf("%d commands stored on %s, want 1", n, ownCmd)
		}
	})

	t.Run("other subscriptions are refused", func(t *testing.T) {
		for _, subj := range []string{"bridge.evt.band.other-bot.>", "bridge.evt.>", "bridge.work.band.other-bot.>", "_INBOX.>", "_BRIDGE_INBOX.>"} {
			if _, err := worker.SubscribeSync(subj); err != nil {
				t.Fatal(err)
			}
			async.waitViolation(t, "subscription", subj)
		}
	})

	t.Run("publishing into another inbox is refused", func(t *testing.T) {
		const forged = "_INBOX.bridge-reply.1"
		if err := worker.Publish(forged, []byte(`{"status":"processed"}`)); err != nil {
			t.Fatal(err)
		}
		async.waitViolation(t, "publish", forged)
	})

	t.Run("own events through the durable consumer", func(t *testing.T) {
		cons, err := wjs.Consumer(ctx, "BRIDGE_EVENTS", workerDur)
		if err != nil {
			t.Fatalf("consumer info: %v", err)
		}
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for m := range batch.Messages() {
			got = append(got, m.Subject())
			if err := m.DoubleAck(ctx); err != nil {
				t.Fatalf("ack: %v", err)
			}
		}
		if batch.Error() != nil && !errors.Is(batch.Error(), nats.ErrTimeout) {
			t.Fatalf("fetch: %v", batch.Error())
		}
		if len(got) != 1 || got[0] != ownEvt {
			t.Fatalf("fetched %v, want [%s]", got, ownEvt)
		}
		more, err := cons.FetchNoWait(10)
		if err != nil {
			t.Fatal(err)
		}
		for m := range more.Messages() {
			t.Errorf("fetched %s as well", m.Subject())
		}
	})

	t.Run("creating consumers is refused", func(t *testing.T) {
		short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		_, err := wjs.CreateOrUpdateConsumer(short, "BRIDGE_EVENTS", jetstream.ConsumerConfig{
			Durable: "sneaky", FilterSubject: "bridge.evt.band.other-bot.>",
		})
		if err == nil {
			t.Fatal("worker created a consumer on another connection's events")
		}
		async.waitViolation(t, "publish", "$JS.API.CONSUMER.CREATE.BRIDGE_EVENTS.sneaky")
	})

	t.Run("several replies to a dispatch request", func(t *testing.T) {
		sub, err := worker.QueueSubscribe(ownWork, "workers", func(m *nats.Msg) {
			_ = m.Respond([]byte(`{"status":"processing"}`))
			_ = m.Respond([]byte(`{"status":"processed"}`))
		})
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
		if err := worker.Flush(); err != nil {
			t.Fatal(err)
		}
		inbox := bridge.NewInbox()
		replies, err := bridge.SubscribeSync(inbox)
		if err != nil {
			t.Fatal(err)
		}
		if err := bridge.PublishRequest(ownWork, inbox, []byte(`{"specversion":"1.0"}`)); err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"processing", "processed"} {
			m, err := replies.NextMsgWithContext(ctx)
			if err != nil {
				t.Fatalf("waiting for %s: %v", want, err)
			}
			if !strings.Contains(string(m.Data), `"`+want+`"`) {
				t.Fatalf("reply %s, want %s", m.Data, want)
			}
		}
	})
}
