package claimcheck_test

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bridgeworks/bridge/claimcheck"
	"github.com/bridgeworks/bridge/internal/testutil"
	"github.com/bridgeworks/bridge/natsbus"
	"github.com/bridgeworks/bridge/subjects"
)

const limit = 64 << 10

// A payload several times max_payload goes in and comes back byte for
// byte; putting it again writes nothing new; a corrupted reference fails.
func TestPutFetch(t *testing.T) {
	t.Parallel()
	s := testutil.NATSWith(t, natsbus.EmbeddedOptions{MaxPayload: limit})
	ctx := testutil.Context(t, 30*time.Second)
	st := claimcheck.New(claimcheck.Options{JS: s.JS, Conn: "support-bot", MaxAge: time.Hour})
	data := make([]byte, 5*limit+123)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(r.IntN(256))
	}
	ref, err := st.Put(ctx, data)
	if err != nil {
		t.Fatal(err)
	}
	if ref.Bucket != "BRIDGE_PAYLOADS_support-bot" || ref.Size != int64(len(data)) || ref.Object != ref.SHA256 {
		t.Fatalf("ref %+v", ref)
	}
	got, err := claimcheck.Fetch(ctx, s.JS, ref)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("fetched %d bytes, differ from the %d put", len(got), len(data))
	}
	info, err := s.JS.Stream(ctx, "OBJ_"+ref.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	before, _ := info.Info(ctx)
	if _, err := st.Put(ctx, data); err != nil {
		t.Fatal(err)
	}
	after, _ := info.Info(ctx)
	if after.State.Msgs != before.State.Msgs {
		t.Fatalf("second put stored %d more messages", after.State.Msgs-before.State.Msgs)
	}
	if before.Config.MaxAge != time.Hour {
		t.Fatalf("bucket max age %s, want 1h", before.Config.MaxAge)
	}
	bad := ref
	bad.SHA256 = strings.Repeat("0", 64)
	if _, err := claimcheck.Fetch(ctx, s.JS, bad); err == nil {
		t.Fatal("a reference with the wrong sha256 fetched")
	}
	bad = ref
	bad.Object = strings.Repeat("1", 64)
	if _, err := claimcheck.Fetch(ctx, s.JS, bad); err == nil {
		t.Fatal("a missing object fetched")
	}
}

// PayloadSize counts what the client counts: a message of exactly the
// limit is published, one byte more is refused with ErrMaxPayload, which
// IsTooLarge recognises.
func TestPayloadSizeMatchesTheClient(t *testing.T) {
	t.Parallel()
	s := testutil.NATSWith(t, natsbus.EmbeddedOptions{MaxPayload: limit})
	m := nats.NewMsg("x.y")
	m.Header.Set(subjects.HeaderMsgID, "id-1")
	m.Header.Set("Bridge-Attempt", "1")
	m.Data = make([]byte, limit)
	m.Data = m.Data[:limit-int(claimcheck.PayloadSize(m)-int64(len(m.Data)))]
	if claimcheck.PayloadSize(m) != limit || !claimcheck.Fits(s.NC, m) {
		t.Fatalf("size %d, fits %v", claimcheck.PayloadSize(m), claimcheck.Fits(s.NC, m))
	}
	if err := s.NC.PublishMsg(m); err != nil {
		t.Fatalf("at the limit: %v", err)
	}
	m.Data = append(m.Data, 'x')
	err := s.NC.PublishMsg(m)
	if claimcheck.Fits(s.NC, m) || !errors.Is(err, nats.ErrMaxPayload) || !claimcheck.IsTooLarge(err) {
		t.Fatalf("one byte over: fits %v, err %v", claimcheck.Fits(s.NC, m), err)
	}
}
