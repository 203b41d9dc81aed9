//go:build chaos

package chaos

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bridgeworks/bridge/connector/chatapi"
	"github.com/bridgeworks/bridge/emulator/chatapiemu"
	"github.com/bridgeworks/bridge/internal/testutil"
	"github.com/bridgeworks/bridge/subjects"
)

// TestChaosChatAPIInbox runs the real bridge binary and a nats-server
// process with a chatapi connection polling two agents'
// inboxes while items keep arriving, and SIGKILLs it twice, each time
// while mark-read of one agent fails (so stored items wait unread at the
// kill), restarting it. Every item ends on NATS exactly
// once (counted by Nats-Msg-Id and event id over BRIDGE_EVENTS), every
// item ends read, and no item is marked read before JetStream stored its
// event (the emulator's mark-read times against the stored timestamps).
// Publishes JetStream deduplicated are counted in the report line.
func TestChaosChatAPIInbox(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos test: not in -short runs")
	}
	const conn, addEvery, kills = "teammate", 20 * time.Millisecond, 2
	dir := t.TempDir()
	bin := build(t, dir, "bridge", "github.com/bridgeworks/bridge/cmd/bridge")
	natsBin := build(t, dir, "nats-server", "github.com/nats-io/nats-server/v2")

	emu := chatapiemu.New(chatapiemu.Options{})
	if _, err := emu.Start(); err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	agents := []string{emu.AgentID(), emu.AddAgent("Second Assistant").ID}

	// A nats-server process of its own, so that the observer below stays
	// connected while the bridge dies and sees every publish.
	natsPort, httpPort := freePort(t), freePort(t)
	natsURL := fmt.Sprintf("nats://127.0.0.1:%d", natsPort)
	ns := start(t, "nats-server", filepath.Join(dir, "nats.log"), nil, natsBin, "-a", "127.0.0.1", "-p", fmt.Sprint(natsPort), "-js", "-sd", filepath.Join(dir, "js"))
	defer ns.stop(t)
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
owner = "chaos-chatapi"
[[connection]]
name = %q
platform = "chatapi"
reconnect_initial = "20ms"
reconnect_max = "200ms"
[connection.settings]
base_url = %q
api_key_env = "CHATAPI_API_KEY"
inbox_agents = [%q, %q]
poll_interval = "50ms"
rate_limit = 1000.0
rate_burst = 100
`, natsURL, httpPort, conn, emu.BaseURL(), agents[0], agents[1])
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "bridge.log")
	runBridge := func() *proc {
		return start(t, "bridge", logPath, []string{"CHATAPI_API_KEY=" + emu.APIKey()}, bin, "run", "--config", cfgPath)
	}
	br := runBridge()
	defer func() { br.stop(t) }()
	defer func() {
		if t.Failed() {
			t.Logf("bridge log tail:\n%s", tail(logPath, 60))
		}
	}()

	// The observer: counts every publish of an inbox event (a core
	// subscription sees publishes JetStream deduplicates too) and reads
	// the stream.
	nc, err := nats.Connect(natsURL, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond), nats.RetryOnFailedConnect(true))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	var pmu sync.Mutex
	published := map[string]int{} // Nats-Msg-Id → publishes seen
	filter := subjects.DefaultPrefix + ".evt." + chatapi.Platform + "." + conn + ".*." + chatapi.EventInbox
	if _, err := nc.Subscribe(filter, func(m *nats.Msg) {
		pmu.Lock()
		published[m.Header.Get(subjects.HeaderMsgID)]++
		pmu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	events := subjects.StreamName(subjects.DefaultPrefix, subjects.StreamEvents)
	stored := func() uint64 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		st, err := js.Stream(ctx, events)
		if err != nil {
			return 0
		}
		info, err := st.Info(ctx, jetstream.WithSubjectFilter(filter))
		if err != nil {
			return 0
		}
		var n uint64
		for _, c := range info.State.Subjects {
			n += c
		}
		return n
	}
	waitStored := func(more uint64, what string) {
		t.Helper()
		base := stored()
		testutil.Eventually(t, 20*time.Second, func() bool { return stored() >= base+more }, "%d more items stored (%s)", more, what)
	}
	readCount := func() (read, all int) {
		for _, a := range agents {
			for _, it := range emu.InboxItems(a) {
				all++
				if it.Read() {
					read++
				}
			}
		}
		return read, all
	}

	// Items arrive continuously, alternating between the agents.
	var amu sync.Mutex
	added := map[string]bool{} // agent/item id
	stopAdding := make(chan struct{})
	addDone := make(chan struct{})
	go func() { // owned: the test waits on addDone
		defer close(addDone)
		tick := time.NewTicker(addEvery)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stopAdding:
				return
			case <-tick.C:
			}
			a := agents[i%len(agents)]
			it, err := emu.AddInboxItem(a, chatapiemu.InboxItem{Content: fmt.Sprintf("reminder %d", i), Type: "reminder"})
			if err != nil {
				t.Errorf("add item %d: %v", i, err)
				return
			}
			amu.Lock()
			added[a+"/"+it.ID] = true
			amu.Unlock()
		}
	}()

	// The kills: each while mark-read of the first agent fails, so that
	// items stored on NATS wait unread on the platform when the process
	// dies; the next process must mark them read without storing them
	// again.
	markRead := "/api/agents/" + agents[0] + "/mark-read"
	unreadAtKill := make([]int, 0, kills)
	for range kills {
		waitStored(20, "before mark-read fails")
		emu.FailRoute(http.MethodPost, markRead, 1<<20, http.StatusServiceUnavailable, 0)
		waitStored(10, "while mark-read fails")
		n := stored()
		read, _ := readCount()
		br.kill()
		unreadAtKill = append(unreadAtKill, int(n)-read)
		emu.ClearFaults()
		br = runBridge()
	}
	waitStored(20, "after the last restart")
	close(stopAdding)
	<-addDone

	amu.Lock()
	want := len(added)
	amu.Unlock()
	testutil.Eventually(t, 30*time.Second, func() bool { r, all := readCount(); return r == all && all == want }, "all %d items read", want)
	testutil.Eventually(t, 20*time.Second, func() bool { return stored() >= uint64(want) }, "%d items stored", want)

	// Every stored inbox event, by message id and by event id.
	ctx := testutil.Context(t, 30*time.Second)
	cons, err := js.OrderedConsumer(ctx, events, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
	if err != nil {
		t.Fatal(err)
	}
	total := stored()
	byMsgID, byEventID := map[string]int{}, map[string]int{}
	storedAt := map[string]time.Time{} // agent/item id
	for range total {
		m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatalf("reading the stored events: %v", err)
		}
		ev, err := subjects.DecodeEvent(m.Data())
		if err != nil {
			t.Fatalf("event %s: %v", m.Subject(), err)
		}
		md, err := m.Metadata()
		if err != nil {
			t.Fatal(err)
		}
		msgID := m.Headers().Get(subjects.HeaderMsgID)
		byMsgID[msgID]++
		byEventID[ev.ID]++
		if msgID != ev.ID {
			t.Errorf("event %s stored with Nats-Msg-Id %q", ev.ID, msgID)
		}
		storedAt[ev.Room+"/"+strings.TrimPrefix(ev.ID, chatapi.Platform+":"+conn+":")] = md.Timestamp
	}
	dups := 0
	for id, n := range byEventID {
		if n != 1 || byMsgID[id] != 1 {
			dups += n - 1
			t.Errorf("item %s stored %d times (%d by Nats-Msg-Id)", id, n, byMsgID[id])
		}
	}
	amu.Lock()
	lost := 0
	for k := range added {
		if _, ok := storedAt[k]; !ok {
			lost++
			t.Errorf("item %s never stored", k)
		}
	}
	amu.Unlock()
	if len(storedAt) != want {
		t.Errorf("%d distinct items stored, %d added", len(storedAt), want)
	}

	// Marked read only after stored: every accepted mark-read call names
	// stored items only, after their storing; each item's read time too.
	early := 0
	for _, call := range emu.MarkReadCalls() {
		if call.All {
			t.Errorf("mark-read of %s without ids: it marks items the bridge may not have stored", call.AgentID)
		}
		for _, id := range call.IDs {
			at, ok := storedAt[call.AgentID+"/"+id]
			if !ok || call.At.Before(at) {
				early++
				t.Errorf("item %s named by mark-read at %s, stored at %s (stored: %v)", id, call.At.Format(time.RFC3339Nano), at.Format(time.RFC3339Nano), ok)
			}
		}
	}
	for _, a := range agents {
		for _, it := range emu.InboxItems(a) {
			if at := storedAt[a+"/"+it.ID]; it.ReadAt.Before(at) {
				early++
				t.Errorf("item %s read at %s, stored at %s", it.ID, it.ReadAt.Format(time.RFC3339Nano), at.Format(time.RFC3339Nano))
			}
		}
	}
	for i, n := range unreadAtKill {
		if n <= 0 {
			t.Errorf("kill %d hit no stored-but-unread item (%d): the scenario did not test the restart's catch-up", i+1, n)
		}
	}
	// Publishes again of a stored item (JetStream drops them by
	// Nats-Msg-Id): the bridge records an item stored after its PubAck,
	// so a kill between the two may cause one; they are counted, not
	// failed.
	testutil.Eventually(t, 10*time.Second, func() bool { pmu.Lock(); defer pmu.Unlock(); return len(published) >= want }, "every publish seen")
	republished := 0
	pmu.Lock()
	for id, n := range published {
		republished += n - 1
		if byEventID[id] == 0 {
			t.Errorf("published %s (%d times) but not stored", id, n)
		}
	}
	pmu.Unlock()
	report := fmt.Sprintf("chaos-chatapi: items=%d agents=%d bridge_kills=%d stored_unread_at_kill=%v stored=%d lost=%d duplicates=%d republished_deduplicated=%d marked_read_before_stored=%d mark_read_calls=%d",
		want, len(agents), kills, unreadAtKill, total, lost, dups, republished, early, len(emu.MarkReadCalls()))
	t.Log(report)
	fmt.Println(report)
}
