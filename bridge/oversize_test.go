package bridge

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bridgeworks/bridge/claimcheck"
	"github.com/bridgeworks/bridge/emulator/bandemu"
	"github.com/bridgeworks/bridge/internal/testutil"
	"github.com/bridgeworks/bridge/natsbus"
	"github.com/bridgeworks/bridge/subjects"
)

// A chat message larger than NATS's max_payload in the middle of the flow
// neither stops the connection's inbound nor vanishes: every later message
// of every room is stored in order, the big one is stored with a reference
// to its data, which is fetchable and equal to what the platform sent, and
// a payload_offloaded lifecycle event and a metric say so.
func TestBandMessageOverMaxPayload(t *testing.T) {
	t.Parallel()
	const limit = 64 << 10
	srv := testutil.NATSWith(t, natsbus.EmbeddedOptions{MaxPayload: limit})
	env := newBandEnv(t, bandemu.Options{})
	r1 := env.emu.AddRoom("one", env.user.ID)
	r2 := env.emu.AddRoom("two", env.user.ID)
	spec := env.spec
	spec.natsURL = srv.URL
	h := runBridge(t, spec)
	waitState(t, h, StateConnected)
	sys, err := h.info.Conn.SubscribeSync("bridge.sys.band.agent." + string(subjects.LifecyclePayloadOffloaded))
	if err != nil {
		t.Fatal(err)
	}

	posted := map[string][]string{}
	post := func(n int, tag string) {
		for i := range n {
			for _, r := range []bandemu.Room{r1, r2} {
				m := env.emu.PostUserMessage(r.ID, env.user.ID, fmt.Sprintf("@Bridge Bot %s %d", tag, i))
				posted[r.ID] = append(posted[r.ID], m.ID)
			}
		}
	}
	post(3, "before")
	bigText := "@Bridge Bot " + strings.Repeat("big ", 2*limit/4)
	big := env.emu.PostUserMessage(r1.ID, env.user.ID, bigText)
	posted[r1.ID] = append(posted[r1.ID], big.ID)
	post(3, "after")
	want := len(posted[r1.ID]) + len(posted[r2.ID])

	var perRoom map[string][]string
	var bigEvent subjects.Event
	testutil.Eventually(t, 30*time.Second, func() bool {
		perRoom, bigEvent = readMessages(t, h.js)
		n := 0
		for _, ids := range perRoom {
			n += len(ids)
		}
		return n >= want
	}, "all %d messages stored", want)
	for room, ids := range posted {
		if got := strings.Join(perRoom[room], ","); got != strings.Join(ids, ",") {
			t.Errorf("room %s: stored %s, posted %s", room, got, strings.Join(ids, ","))
		}
	}
	ref, ok := bigEvent.Ref()
	if !ok || len(bigEvent.Data) != 0 || ref.Bucket != "BRIDGE_PAYLOADS_agent" {
		t.Fatalf("the big message is stored without a reference: %+v", bigEvent)
	}
	data, err := claimcheck.Fetch(testutil.Context(t, 10*time.Second), h.js, ref)
	if err != nil {
		t.Fatal(err)
	}
	var m struct{ ID, Content string }
	if err := json.Unmarshal(data, &m); err != nil || m.ID != big.ID || m.Content != bigText {
		t.Fatalf("fetched payload: id %q, %d characters of content (%v)", m.ID, len(m.Content), err)
	}
	lc, err := sys.NextMsgWithContext(testutil.Context(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	lev, _ := subjects.DecodeEvent(lc.Data)
	var info struct {
		EventID string `json:"event_id"`
		Size    int    `json:"size"`
		Limit   int    `json:"limit"`
	}
	if err := json.Unmarshal(lev.Data, &info); err != nil || info.EventID != bigEvent.ID || info.Size <= limit || info.Limit != limit {
		t.Errorf("payload_offloaded: %s (%v)", lev.Data, err)
	}
	if strings.Contains(string(lc.Data), "big big") {
		t.Errorf("the lifecycle event carries the payload")
	}
	if body := get(t, "http://"+h.info.HTTPAddr+"/metrics"); !containsLine(body, `bridge_events_offloaded_total{connection="agent"} 1`) {
		t.Errorf("metrics: %s", grep(body, "offloaded"))
	}

	// Restarted, the bridge's catch-up finds the big message again (nobody
	// marked it processed): it is offloaded again, stored once, and what
	// comes after it still arrives.
	h.stop()
	post(2, "restart")
	h = runBridge(t, spec)
	want = len(posted[r1.ID]) + len(posted[r2.ID])
	testutil.Eventually(t, 30*time.Second, func() bool {
		perRoom, _ = readMessages(t, h.js)
		return len(perRoom[r1.ID])+len(perRoom[r2.ID]) >= want
	}, "all %d messages stored after a restart", want)
	for room, ids := range posted {
		if got := strings.Join(perRoom[room], ","); got != strings.Join(ids, ",") {
			t.Errorf("after restart, room %s: stored %s, posted %s", room, got, strings.Join(ids, ","))
		}
	}
}

// readMessages reads the stored message_created events: the platform
// message ids per room in stored order (from the event ids, so an event
// without inline data counts too), and the last event stored with a
// reference.
func readMessages(t *testing.T, js jetstream.JetStream) (map[string][]string, subjects.Event) {
	t.Helper()
	ctx := testutil.Context(t, 10*time.Second)
	st, err := js.Stream(ctx, "BRIDGE_EVENTS")
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil || info.State.Msgs == 0 {
		return nil, subjects.Event{}
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"bridge.evt.band.agent.*.message_created"}})
	if err != nil {
		t.Fatal(err)
	}
	perRoom := map[string][]string{}
	var offloaded subjects.Event
	for {
		msg, err := cons.Next(jetstream.FetchMaxWait(300 * time.Millisecond))
		if err != nil {
			return perRoom, offloaded
		}
		ev, err := subjects.DecodeEvent(msg.Data())
		if err != nil {
			t.Fatal(err)
		}
		id := strings.TrimPrefix(ev.ID, "band:agent:")
		if _, ok := ev.Ref(); ok {
			offloaded = ev
		}
		perRoom[ev.Room] = append(perRoom[ev.Room], id)
		if md, _ := msg.Metadata(); md != nil && md.Sequence.Stream >= info.State.LastSeq {
			return perRoom, offloaded
		}
	}
}
