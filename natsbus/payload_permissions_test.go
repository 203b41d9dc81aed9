package natsbus_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bridgeworks/bridge/claimcheck"
	"github.com/bridgeworks/bridge/internal/testutil"
	"github.com/bridgeworks/bridge/natsbus"
	"github.com/bridgeworks/bridge/subjects"
)

// Under the documented permissions the bridge offloads payloads too large
// for one message into each connection's bucket, and a worker reads its
// own connection's payloads by reference, and no other's: it cannot read
// another connection's bucket, create a consumer on its own (a consumer's
// creator picks where the server delivers) or delete what is there.
func TestDocumentedPermissionsPayloads(t *testing.T) {
	t.Parallel()
	srv := startDocumentedServer(t)
	url := srv.ClientURL()
	ctx := testutil.Context(t, 30*time.Second)
	bridge := mustConnect(t, natsbus.Options{URL: url, User: "bridge", Password: bridgePass})
	bjs := jetStream(t, bridge)
	data := bytes.Repeat([]byte("0123456789abcdef"), 300<<10/16) // several chunks
	put := func(conn string) subjects.DataRef {
		ref, err := claimcheck.New(claimcheck.Options{JS: bjs, Conn: conn}).Put(ctx, data)
		if err != nil {
			t.Fatalf("bridge user cannot offload a payload of %s: %v", conn, err)
		}
		return ref
	}
	own, other := put("support-bot"), put("other-bot")

	var async asyncErrors
	worker, err := nats.Connect(url, nats.UserInfo("support-bot-worker", workerPass), nats.CustomInboxPrefix(workerInbox),
		nats.ErrorHandler(async.handler))
	if err != nil {
		t.Fatalf("worker connect: %v", err)
	}
	t.Cleanup(worker.Close)
	wjs := jetStream(t, worker)

	got, err := claimcheck.Fetch(ctx, wjs, own)
	if err != nil {
		t.Fatalf("worker cannot fetch its own connection's payload: %v", err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("fetched %d bytes, differ from the %d offloaded", len(got), len(data))
	}

	short := func() context.Context {
		c, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		t.Cleanup(cancel)
		return c
	}
	if _, err := claimcheck.Fetch(short(), wjs, other); err == nil {
		t.Fatal("worker fetched another connection's payload")
	}
	async.waitViolation(t, "publish", "$JS.API.STREAM.INFO.OBJ_"+other.Bucket)

	ownStream := "OBJ_" + own.Bucket
	if _, err := wjs.CreateOrUpdateConsumer(short(), ownStream, jetstream.ConsumerConfig{Durable: "sneaky"}); err == nil {
		t.Fatal("worker created a consumer on its payload bucket")
	}
	async.waitViolation(t, "publish", "$JS.API.CONSUMER.CREATE."+ownStream)
	if err := wjs.DeleteStream(short(), ownStream); err == nil {
		t.Fatal("worker deleted its payload bucket")
	}
	async.waitViolation(t, "publish", "$JS.API.STREAM.DELETE."+ownStream)
}
