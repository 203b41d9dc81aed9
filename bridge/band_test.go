package bridge

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/connector/band"
	"github.com/bridgeworks/bridge/emulator/bandemu"
	"github.com/bridgeworks/bridge/internal/phoenix"
	"github.com/bridgeworks/bridge/internal/testutil"
	"github.com/bridgeworks/bridge/subjects"
)

// fastBand is the band platform with test-sized intervals.
func fastBand() connector.Registry {
	return connector.Registry{"band": band.Factory(false, band.Options{
		IdleResync: time.Second,
		Backoff: phoenix.Backoff{RapidFirst: 10 * time.Millisecond,
			RapidSecond: 20 * time.Millisecond, HoldDownBase: 50 * time.Millisecond, HoldDownStep: 10 * time.Millisecond,
			HoldDownMax: 100 * time.Millisecond, Refused: 50 * time.Millisecond, RestartMin: time.Millisecond, RestartMax: 5 * time.Millisecond},
	})}
}

type bandEnv struct {
	emu  *bandemu.Server
	user bandemu.User
	spec bridgeSpec
}

func newBandEnv(t *testing.T, emuOpts bandemu.Options) *bandEnv {
	t.Helper()
	if emuOpts.HeartbeatTimeout == 0 {
		emuOpts.HeartbeatTimeout = 2 * time.Second
	}
	emu := bandemu.New(emuOpts)
	url, err := emu.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emu.Close)
	// An inline settings table, so a test may append [[connection]] keys.
	cfg := fmt.Sprintf("[[connection]]\nname = \"agent\"\nplatform = \"band\"\nsettings = { base_url = %q, agent_id = %q, api_key_env = \"BAND_KEY\" }\n", url, emu.AgentID())
	return &bandEnv{
		emu: emu, user: emu.AddUser("Dana Levi"),
		spec: bridgeSpec{config: cfg, registry: fastBand(), env: map[string]string{"BAND_KEY": emu.APIKey()}, storeDir: t.TempDir()},
	}
}

// storedMessages reads every message_created event in BRIDGE_EVENTS:
// message ids per room in stored order, and how often each id was stored.
func storedMessages(t *testing.T, js jetstream.JetStream) (perRoom map[string][]string, count map[string]int) {
	t.Helper()
	ctx := testutil.Context(t, 30*time.Second)
	st, err := js.Stream(ctx, "BRIDGE_EVENTS")
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	perRoom, count = map[string][]string{}, map[string]int{}
	if info.State.Msgs == 0 {
		return
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"bridge.evt.band.agent.*.message_created"}})
	if err != nil {
		t.Fatal(err)
	}
	last := info.State.LastSeq
	for {
		msg, err := cons.Next(jetstream.FetchMaxWait(500 * time.Millisecond))
		if err != nil {
			return // no more
		}
		ev, err := subjects.DecodeEvent(msg.Data())
		if err != nil {
			t.Fatal(err)
		}
		var m struct{ ID string }
		_ = json.Unmarshal(ev.Data, &m)
		perRoom[ev.Room] = append(perRoom[ev.Room], m.ID)
		count[m.ID]++
		if md, _ := msg.Metadata(); md != nil && md.Sequence.Stream >= last {
			return
		}
	}
}

func totalStored(t *testing.T, js jetstream.JetStream) int {
	_, count := storedMessages(t, js)
	n := 0
	for _, c := range count {
		n += c
	}
	return n
}

// checkExactlyOnceInOrder asserts each posted message was stored once, in
// each room's posting order.
func checkExactlyOnceInOrder(t *testing.T, js jetstream.JetStream, posted map[string][]string) {
	t.Helper()
	perRoom, count := storedMessages(t, js)
	for id, n := range count {
		if n != 1 {
			t.Errorf("message %s stored %d times", id, n)
		}
	}
	for room, ids := range posted {
		got := perRoom[room]
		if len(got) != len(ids) {
			t.Errorf("room %s: stored %d messages, posted %d", room, len(got), len(ids))
			continue
		}
		for i := range ids {
			if got[i] != ids[i] {
				t.Errorf("room %s: position %d is %s, want %s (order broken)", room, i, got[i], ids[i])
				break
			}
		}
	}
}

func waitState(t *testing.T, h *harness, want State) {
	t.Helper()
	testutil.Eventually(t, 20*time.Second, func() bool { return statusOf(t, h.info.HTTPAddr) == want }, "connection state %s", want)
}

func TestBand1000MessagesAcross20Rooms(t *testing.T) {
	t.Parallel()
	env := newBandEnv(t, bandemu.Options{})
	var rooms []bandemu.Room
	for i := range 20 {
		rooms = append(rooms, env.emu.AddRoom(fmt.Sprintf("room %d", i), env.user.ID))
	}
	h := runBridge(t, env.spec)
	waitState(t, h, StateConnected)
	posted := map[string][]string{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, r := range rooms {
		wg.Go(func() {
			for i := range 50 {
				m := env.emu.PostUserMessage(r.ID, env.user.ID, fmt.Sprintf("@Bridge Bot question %d", i))
				mu.Lock()
				posted[r.ID] = append(posted[r.ID], m.ID)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	testutil.Eventually(t, 30*time.Second, func() bool { return totalStored(t, h.js) >= 1000 }, "1000 messages stored")
	checkExactlyOnceInOrder(t, h.js, posted)
}

func TestBandCatchesUpAfterOutages(t *testing.T) {
	t.Parallel()
	env := newBandEnv(t, bandemu.Options{})
	r1 := env.emu.AddRoom("one", env.user.ID)
	r2 := env.emu.AddRoom("two", env.user.ID)
	posted := map[string][]string{}
	post := func(n int) {
		for i := range n {
			for _, r := range []bandemu.Room{r1, r2} {
				m := env.emu.PostUserMessage(r.ID, env.user.ID, fmt.Sprintf("@Bridge Bot %d", i))
				posted[r.ID] = append(posted[r.ID], m.ID)
			}
		}
	}
	want := func() int { return len(posted[r1.ID]) + len(posted[r2.ID]) }
	post(5) // before the bridge ever ran: found by the first catch-up
	h := runBridge(t, env.spec)
	waitState(t, h, StateConnected)
	testutil.Eventually(t, 20*time.Second, func() bool { return totalStored(t, h.js) >= want() }, "initial backlog")

	// Pushes lost, then the socket dropped: the reconnect's catch-up finds them.
	env.emu.SetPushesEnabled(false)
	post(5)
	env.emu.DropSockets()
	env.emu.SetPushesEnabled(true)
	testutil.Eventually(t, 20*time.Second, func() bool { return totalStored(t, h.js) >= want() }, "after drop")

	// Heartbeats stalled: the client notices, reconnects and catches up.
	env.emu.SetPushesEnabled(false)
	env.emu.StallHeartbeats(true)
	post(5)
	testutil.Eventually(t, 20*time.Second, func() bool { return env.emu.Connections() == 0 || statusOf(t, h.info.HTTPAddr) == StateReconnecting }, "heartbeat stall noticed")
	env.emu.StallHeartbeats(false)
	env.emu.SetPushesEnabled(true)
	testutil.Eventually(t, 20*time.Second, func() bool { return totalStored(t, h.js) >= want() }, "after heartbeat stall")

	// Bridge restarted (same store): messages posted while it was down arrive.
	h.stop()
	post(5)
	h = runBridge(t, env.spec)
	testutil.Eventually(t, 20*time.Second, func() bool { return totalStored(t, h.js) >= want() }, "after restart")
	checkExactlyOnceInOrder(t, h.js, posted)
}

func TestBandRoomsAddedAndRemoved(t *testing.T) {
	t.Parallel()
	env := newBandEnv(t, bandemu.Options{})
	h := runBridge(t, env.spec)
	waitState(t, h, StateConnected)
	sub, err := h.info.Conn.SubscribeSync("bridge.evt.band.agent.>")
	if err != nil {
		t.Fatal(err)
	}
	r := env.emu.AddRoom("late", env.user.ID)
	m := env.emu.PostUserMessage(r.ID, env.user.ID, "@Bridge Bot hello")
	ctx := testutil.Context(t, 20*time.Second)
	seen := map[string]bool{}
	for !seen["message_created"] || !seen["room_added"] {
		msg, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			t.Fatalf("saw %v: %v", seen, err)
		}
		s, _ := subjects.Parse("bridge", msg.Subject)
		if s.Room != r.ID {
			t.Fatalf("event on room %q, want %q", s.Room, r.ID)
		}
		seen[s.Name] = true
	}
	_ = m
	env.emu.RemoveAgentFromRoom(r.ID)
	for !seen["room_removed"] {
		msg, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			t.Fatalf("saw %v: %v", seen, err)
		}
		s, _ := subjects.Parse("bridge", msg.Subject)
		seen[s.Name] = true
	}
}

func TestBandSupersedeStops(t *testing.T) {
	t.Parallel()
	env := newBandEnv(t, bandemu.Options{})
	h := runBridge(t, env.spec)
	waitState(t, h, StateConnected)
	sub, err := h.info.Conn.SubscribeSync("bridge.sys.band.agent.superseded")
	if err != nil {
		t.Fatal(err)
	}
	env.emu.Supersede()
	waitState(t, h, StateSuperseded)
	if _, err := sub.NextMsgWithContext(testutil.Context(t, 10*time.Second)); err != nil {
		t.Fatalf("no superseded lifecycle event: %v", err)
	}
	if body := get(t, "http://"+h.info.HTTPAddr+"/metrics"); !containsLine(body, `bridge_connection_state{connection="agent",platform="band",state="superseded"} 1`) {
		t.Errorf("metrics do not show superseded")
	}
}

func TestBandUpgrade429HonoursRetryAfter(t *testing.T) {
	t.Parallel()
	env := newBandEnv(t, bandemu.Options{})
	env.emu.RejectUpgrades(1, 429, time.Second)
	h := runBridge(t, env.spec)
	waitState(t, h, StateConnected)
	var upgrades []bandemu.RequestRecord
	for _, r := range env.emu.Requests() {
		if r.Path == "/api/v1/socket/websocket" {
			upgrades = append(upgrades, r)
		}
	}
	if len(upgrades) < 2 || upgrades[0].Status != 429 || upgrades[1].Status != 101 {
		t.Fatalf("upgrades: %+v", upgrades)
	}
	if gap := upgrades[1].Time.Sub(upgrades[0].Time); gap < time.Second {
		t.Fatalf("retried %s after a 429 with Retry-After 1s", gap)
	}
}

func containsLine(body, line string) bool {
	for _, l := range splitLines(body) {
		if l == line {
			return true
		}
	}
	return false
}

func splitLines(s string) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}
