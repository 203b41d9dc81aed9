//go:build chaos

package chaos

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bridgeworks/bridge/connector/polyai"
	"github.com/bridgeworks/bridge/emulator/polyaiemu"
	"github.com/bridgeworks/bridge/internal/testutil"
	"github.com/bridgeworks/bridge/subjects"
)

// TestChaosPolyAIResume runs the real bridge binary and a nats-server
// process with a polyai connection holding 12 sessions (a third of them
// streaming) while a worker keeps sending messages the scripted agent
// answers and the agent speaks on its own, and SIGKILLs the bridge twice
// mid-flow, restarting it; while the bridge is down the first time, the
// platform ends one session. Afterwards: every open session was resumed
// from its cursor by each new process; every event of every session is
// stored exactly once (counted per event id over BRIDGE_EVENTS) and the
// sequenced ones are the platform's history in order; every send_message
// reached the platform once; no session was created twice or replaced;
// the session ended meanwhile is reported ended and no longer held.
// Publishes JetStream deduplicated by Nats-Msg-Id (the replay after a
// kill of the events past the last saved cursor) are counted in the
// report line.
func TestChaosPolyAIResume(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos test: not in -short runs")
	}
	const conn, nSessions, kills, sendEvery = "poly-chaos", 12, 2, 20 * time.Millisecond
	dir := t.TempDir()
	bin := build(t, dir, "bridge", "github.com/bridgeworks/bridge/cmd/bridge")
	natsURL := startJetStream(t, dir, build(t, dir, "nats-server", "github.com/nats-io/nats-server/v2"))

	emu := polyaiemu.New(polyaiemu.Options{ChunkSize: 8})
	if _, err := emu.Start(); err != nil {
		t.Fatal(err)
	}
	defer emu.Close()

	cfgPath := filepath.Join(dir, "bridge.toml")
	cfg := fmt.Sprintf(`
[log]
level = "debug"
[nats]
url = %q
[http]
listen = "127.0.0.1:%d"
[lease]
ttl = "2s"
owner = "chaos-polyai"
[[connection]]
name = %q
platform = "polyai"
reconnect_initial = "20ms"
reconnect_max = "200ms"
[connection.settings]
base_url = %q
host = %q
connector_token_env = "POLYAI_CONNECTOR_TOKEN"
heartbeat_interval = "300ms"
echo_timeout = "2s"
state_flush = "100ms"
stream_timeout = "3s"
`, natsURL, freePort(t), conn, emu.URL(), emu.Host())
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "bridge.log")
	runBridge := func() *proc {
		return start(t, "bridge", logPath, []string{"POLYAI_CONNECTOR_TOKEN=" + emu.ConnectorToken()}, bin, "run", "--config", cfgPath)
	}
	br := runBridge()
	defer func() { br.stop(t) }()
	defer func() {
		if t.Failed() {
			if keep := os.Getenv("CHAOS_KEEP_LOG"); keep != "" {
				b, _ := os.ReadFile(logPath)
				_ = os.WriteFile(keep, b, 0o644)
			}
			t.Logf("bridge log tail:\n%s", tail(logPath, 60))
		}
	}()

	w := newCmdWorker(t, natsURL, polyai.Platform, conn)
	// Every publish of an event (a core subscription sees the publishes
	// JetStream deduplicates too), by Nats-Msg-Id.
	var pmu sync.Mutex
	published := map[string]int{}
	if _, err := w.nc.Subscribe(w.subject("evt", ">"), func(m *nats.Msg) {
		pmu.Lock()
		published[m.Header.Get(subjects.HeaderMsgID)]++
		pmu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	w.waitServing("sessions")

	// The sessions, each created by a durable command.
	ids := make([]string, nSessions)
	for i := range ids {
		w.command(subjects.NoRoom, "create_session", fmt.Sprintf("create-%d", i), map[string]any{"streaming": i%3 == 0})
	}
	for i := range ids {
		r := w.result(fmt.Sprintf("create-%d", i))
		var d struct {
			SessionID string `json:"session_id"`
		}
		if !r.OK || json.Unmarshal(r.Data, &d) != nil || d.SessionID == "" {
			t.Fatalf("create_session %d: %+v (error %+v)", i, r, r.Error)
		}
		ids[i] = d.SessionID
	}
	for _, id := range ids {
		testutil.Eventually(t, 20*time.Second, func() bool { s, _ := emu.Session(id); return s.Agent == polyaiemu.AgentPolyAI }, "agent joined %s", id)
	}
	ended, talking := ids[0], ids[1:] // the platform ends the first while the bridge is down

	// The flow: a message every sendEvery, round robin over the talking
	// sessions (each answered by the agent), and the agent speaking on
	// its own, the bridge up or not.
	var fmu sync.Mutex
	var sent []string // command ids of send_message, in order
	texts := map[string]string{}
	stopFlow, flowDone := make(chan struct{}), make(chan struct{})
	go func() { // owned: the test waits on flowDone
		defer close(flowDone)
		tick := time.NewTicker(sendEvery)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stopFlow:
				return
			case <-tick.C:
			}
			sid := talking[i%len(talking)]
			if i%5 == 4 {
				emu.Say(sid, polyaiemu.AgentMessage{Text: fmt.Sprintf("unprompted %d", i)})
				continue
			}
			id, text := fmt.Sprintf("m-%d", i), fmt.Sprintf("message %d", i)
			w.command(sid, "send_message", id, map[string]string{"text": text})
			fmu.Lock()
			sent = append(sent, id)
			texts[id] = sid + "\x00" + text
			fmu.Unlock()
		}
	}()
	sentNow := func() int { fmu.Lock(); defer fmu.Unlock(); return len(sent) }
	waitResults := func(n int, what string) {
		t.Helper()
		base := w.resultCount()
		testutil.Eventually(t, 30*time.Second, func() bool { return w.resultCount() >= base+n }, "%d more results (%s)", n, what)
	}

	connectsAt := func() map[string]int {
		out := map[string]int{}
		for _, s := range emu.Sessions() {
			out[s.ID] = s.Connects
		}
		return out
	}
	waitResults(60, "before the kills")
	for k := 1; k <= kills; k++ {
		before := connectsAt()
		br.kill()
		killedAt, sentAtKill := time.Now(), sentNow()
		if k == 1 {
			if !emu.EndSession(ended, polyaiemu.ReasonNaturalEnd) {
				t.Fatal("emulator: the session was not ended")
			}
		}
		testutil.Eventually(t, 10*time.Second, func() bool { return sentNow() >= sentAtKill+20 }, "commands sent while the bridge is down")
		br = runBridge()
		// Every open session is dialled again with a cursor.
		for _, sid := range talking {
			testutil.Eventually(t, 30*time.Second, func() bool { s, _ := emu.Session(sid); return s.Connects > before[sid] }, "session %s resumed after kill %d", sid, k)
			resumed := false
			for _, h := range emu.Handshakes() {
				resumed = resumed || (h.SessionID == sid && h.Time.After(killedAt) && h.Status == 101 && h.Cursor != "" && h.Cursor != "0")
			}
			if !resumed {
				t.Errorf("session %s: no handshake with a cursor after kill %d", sid, k)
			}
		}
		waitResults(60, fmt.Sprintf("after kill %d", k))
	}
	close(stopFlow)
	<-flowDone

	// Every message command answered ok, each text on the platform once.
	fmu.Lock()
	sentIDs := slices.Clone(sent)
	fmu.Unlock()
	for _, id := range sentIDs {
		if r := w.result(id); !r.OK {
			t.Errorf("send_message %s: %+v (error %+v)", id, r, r.Error)
		}
	}
	received := map[string]int{}
	for _, sid := range talking {
		for _, m := range emu.UserMessages(sid) {
			received[sid+"\x00"+m.Text]++
		}
		if s, _ := emu.Session(sid); s.Duplicates > 0 || s.Ended {
			t.Errorf("session %s: %d messages sent again with a known client_event_id; ended %v (%s)", sid, s.Duplicates, s.Ended, s.EndReason)
		}
	}
	for _, id := range sentIDs {
		if n := received[texts[id]]; n != 1 {
			t.Errorf("send_message %s reached the platform %d times", id, n)
		}
	}

	// The stream holds every session's history: each event once, in order.
	// (Not fatal when it does not: the comparison below says what is
	// missing.)
	var all []chaosStored
	for deadline := time.Now().Add(30 * time.Second); ; {
		all = storedEvents(t, w)
		complete := true
		for _, sid := range ids {
			want := len(emu.History(sid))
			if sid == ended {
				want-- // but its SESSION_END
			}
			complete = complete && len(sequenced(all, sid)) >= want
		}
		if complete || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond) // polling interval
	}
	byID := map[string]int{}
	replaced, endedEvents := 0, 0
	for _, s := range all {
		byID[s.env.ID]++
		switch s.env.Type {
		case "polyai." + string(subjects.LifecycleSessionReplaced):
			replaced++
		case "polyai." + string(subjects.LifecycleSessionEnded):
			if s.env.Room == ended {
				endedEvents++
			}
		}
	}
	dups := 0
	for id, n := range byID {
		if n != 1 {
			dups += n - 1
			t.Errorf("event %s stored %d times", id, n)
		}
	}
	for _, sid := range ids {
		var got, want []string
		for _, s := range sequenced(all, sid) {
			got = append(got, fmt.Sprintf("%d:%s", *s.wire.Sequence, s.wire.ID))
		}
		for _, e := range emu.History(sid) {
			if sid == ended && e.Type == polyaiemu.TypeSessionEnd {
				continue // sent to no socket; the handshake's 404 tells instead (session_ended)
			}
			want = append(want, fmt.Sprintf("%d:%s", e.Sequence, e.ID))
		}
		if !slices.Equal(got, want) {
			t.Errorf("session %s: stored %d sequenced events, want the history's %d in order\n got %v\nwant %v", sid, len(got), len(want), got, want)
		}
	}

	// No session created twice or replaced; the ended one reported ended
	// and no longer held.
	if n := len(emu.Sessions()); n != nSessions {
		t.Errorf("the platform has %d sessions, the worker created %d", n, nSessions)
	}
	if replaced > 0 {
		t.Errorf("%d session_replaced events", replaced)
	}
	if endedEvents != 1 {
		t.Errorf("session %s ended while the bridge was down: %d session_ended events, want 1", ended, endedEvents)
	}
	m, err := w.nc.Request(w.subject("rpc", "sessions"), []byte(`{}`), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var held struct {
		Data struct {
			Sessions []struct {
				ID string `json:"session_id"`
			} `json:"sessions"`
		} `json:"data"`
	}
	if err := json.Unmarshal(m.Data, &held); err != nil {
		t.Fatalf("sessions rpc %s: %v", m.Data, err)
	}
	heldIDs := map[string]bool{}
	for _, s := range held.Data.Sessions {
		heldIDs[s.ID] = true
	}
	if heldIDs[ended] || len(heldIDs) != len(talking) {
		t.Errorf("the bridge holds %d sessions (the ended one: %v), want the %d talking ones", len(heldIDs), heldIDs[ended], len(talking))
	}

	pmu.Lock()
	republished := 0
	for _, n := range published {
		republished += n - 1
	}
	pmu.Unlock()
	report := fmt.Sprintf("chaos-polyai: sessions=%d bridge_kills=%d messages=%d stored_events=%d duplicates=%d republished_deduplicated=%d results_published_again=%d session_replaced=%d session_ended=%d",
		nSessions, kills, len(sentIDs), len(all), dups, republished, w.republished(), replaced, endedEvents)
	t.Log(report)
	fmt.Println(report)
}

// chaosStored is one stored event of the polyai connection.
type chaosStored struct {
	env  subjects.Event
	wire struct {
		ID       string `json:"id"`
		Sequence *int64 `json:"sequence"`
	}
}

// storedEvents reads every event and lifecycle event of w's connection
// in BRIDGE_EVENTS, oldest first.
func storedEvents(t *testing.T, w *cmdWorker) []chaosStored {
	t.Helper()
	ctx := testutil.Context(t, 30*time.Second)
	cons, err := w.js.OrderedConsumer(ctx, subjects.StreamName(subjects.DefaultPrefix, subjects.StreamEvents),
		jetstream.OrderedConsumerConfig{FilterSubjects: []string{w.subject("evt", ">"), w.subject("sys", ">")}})
	if err != nil {
		t.Fatal(err)
	}
	var out []chaosStored
	for {
		batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(300*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			var s chaosStored
			if s.env, err = subjects.DecodeEvent(m.Data()); err != nil {
				t.Fatalf("%s: %v", m.Subject(), err)
			}
			if id := m.Headers().Get(subjects.HeaderMsgID); id != s.env.ID {
				t.Errorf("event %s stored with Nats-Msg-Id %q", s.env.ID, id)
			}
			_ = json.Unmarshal(s.env.Data, &s.wire)
			out = append(out, s)
		}
		if n == 0 {
			return out
		}
	}
}

// sequenced are the stored events of a session that carry the
// platform's sequence, oldest first.
func sequenced(all []chaosStored, room string) []chaosStored {
	var out []chaosStored
	for _, s := range all {
		if s.env.Room == room && s.wire.Sequence != nil && s.env.Type != "polyai."+string(subjects.LifecycleSessionReplaced) {
			out = append(out, s)
		}
	}
	return out
}
