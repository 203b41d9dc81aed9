package bridge

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bridgeworks/bridge/internal/testutil"
	"github.com/bridgeworks/bridge/natsbus"
)

// TestSlotReadInterleaved: a slot read over batches interleaved with other keys finds all
// of them, promptly.
func TestSlotReadInterleaved(t *testing.T) {
	ns := testutil.NATS(t)
	ctx := testutil.Context(t, 60*time.Second)
	st, err := openPublished(ctx, ns.JS, "bridge", time.Hour, 1)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	var b publishedBatch
	n := 0
	for i := range 700 {
		b.add("c1", "r", at, "id-"+strconv.Itoa(n))
		n++
		if err := st.flush(&b); err != nil {
			t.Fatal(err)
		}
		_ = st.record("x" + strconv.Itoa(i))
		b.add("c1", "other", at, "o"+strconv.Itoa(i))
		_ = st.flush(&b)
	}
	if err := ns.JS.Conn().Flush(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	ids, err := st.readSlot(ctx, slotKey("c1", "r", at))
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != n {
		t.Fatalf("%d ids, want %d", len(ids), n)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("read took %v", d)
	}
}

// TestBatchOverMaxPayload: on a server whose max_payload is below a full
// batch (the bridge adapts to any max_payload elsewhere too: claim checks),
// the batch is written in several keys and every id in it is found; a lost
// batch would let a catch-up after the duplicate window store its events
// again.
func TestBatchOverMaxPayload(t *testing.T) {
	s := testutil.NATSWith(t, natsbus.EmbeddedOptions{MaxPayload: 8 << 10})
	nc, js := s.NC, s.JS
	ctx := testutil.Context(t, 30*time.Second)
	st, err := openPublished(ctx, js, "bridge", time.Hour, 1)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	var b publishedBatch
	full := false
	for i := 0; !full; i++ {
		full = b.add("c1", "r", at, "band:c1:"+strings.Repeat("0", 28)+strconv.Itoa(100000+i))
	}
	ferr := st.flush(&b)
	_ = nc.Flush()
	time.Sleep(200 * time.Millisecond)
	var cache slotCache
	found, err := st.has(ctx, &cache, "c1", "r", at, "band:c1:"+strings.Repeat("0", 28)+"100000")
	if err != nil || !found {
		t.Fatalf("a stored event's id is not found (flush: %v; lookup: %v)", ferr, err)
	}
}
