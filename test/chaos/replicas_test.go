//go:build chaos

package chaos

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bridgeworks/bridge/emulator/bandemu"
	"github.com/bridgeworks/bridge/internal/testutil"
	"github.com/bridgeworks/bridge/subjects"
)

const (
	replicaAgents   = 60               // Band agents, one connection each
	replicaCount    = 3                // bridge processes
	replicaTTL      = 3 * time.Second  // lease.ttl
	replicaChaos    = 80 * time.Second // how long messages flow and replicas die
	replicaKillGap  = 10 * time.Second // one replica dies this often
	replicaDownFor  = 4 * time.Second  // a dead replica comes back (a new pod) after this
	replicaPostRate = 6                // user messages a second, across the rooms
)

// replicaView is what the test reads from a replica's /status.
type replicaView struct {
	Connections []struct {
		Name          string
		State         string
		LeaseRevision uint64 `json:"lease_revision"`
	}
	Cluster struct {
		Self    string
		Members []struct {
			Instance string
			Holds    int
		}
	}
}

func readReplica(port int) (replicaView, error) {
	var v replicaView
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/status", port))
	if err != nil {
		return v, err
	}
	defer resp.Body.Close()
	return v, json.NewDecoder(resp.Body).Decode(&v)
}

// runs lists the connections the replica runs (holds the lease of).
func (v replicaView) runs() []string {
	var out []string
	for _, c := range v.Connections {
		if c.LeaseRevision != 0 {
			out = append(out, c.Name)
		}
	}
	return out
}

// death is one replica stopped by the chaos: when, how, and what it ran.
type death struct {
	at    time.Time
	sig   syscall.Signal
	conns []string
}

func TestChaosReplicasOnNATSCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos test: not in -short runs")
	}
	dir := t.TempDir()
	bridgeBin := build(t, dir, "bridge", "github.com/bridgeworks/bridge/cmd/bridge")
	natsBin := build(t, dir, "nats-server", "github.com/nats-io/nats-server/v2")

	nc3 := startNATSCluster(t, dir, natsBin)
	defer nc3.stop()

	// The platform: one agent per connection, each in a room of its own
	// with one user.
	emu := bandemu.New(bandemu.Options{})
	emuURL, err := emu.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	type room struct {
		conn, agent, user, id string
	}
	var rooms []room
	env := []string{}
	var cfg strings.Builder
	fmt.Fprintf(&cfg, `
[log]
level = "info"
[nats]
url = %q
replicas = 3
[lease]
ttl = %q
[shutdown]
drain_timeout = "5s"
`, nc3.urls(), replicaTTL)
	for i := range replicaAgents {
		a := emu.AddAgent(fmt.Sprintf("Agent %d", i))
		u := emu.AddUser(fmt.Sprintf("User %d", i))
		r := emu.AddRoomFor(a.ID, fmt.Sprintf("room %d", i), u.ID)
		conn := fmt.Sprintf("agent-%02d", i)
		rooms = append(rooms, room{conn: conn, agent: a.ID, user: u.ID, id: r.ID})
		keyEnv := fmt.Sprintf("BAND_KEY_%d", i)
		env = append(env, keyEnv+"="+a.APIKey)
		fmt.Fprintf(&cfg, `
[[connection]]
name = %q
platform = "band"
command_backoff_max = "1s"
retry_after_max = "2s"
supersede_cooloff = "5s"
[connection.settings]
base_url = %q
agent_id = %q
api_key_env = %q
heartbeat_interval = "2s"
[[dispatch]]
connection = %q
timeout = "3s"
max_attempts = 1000
backoff_initial = "100ms"
backoff_max = "1s"
`, conn, emuURL, a.ID, keyEnv, conn)
	}
	cfgPath := filepath.Join(dir, "replicas.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg.String()), 0o600); err != nil {
		t.Fatal(err)
	}

	// The replicas: same config; each start is a new pod (a new owner),
	// so a dead replica's leases are taken over by expiry, not by the
	// restarted-owner shortcut.
	var bmu sync.Mutex
	ports := make([]int, replicaCount)
	logs := make([]string, replicaCount)
	brs := make([]*proc, replicaCount)
	gen := 0
	runReplica := func(i int) {
		gen++
		e := append(slices.Clone(env), fmt.Sprintf("BRIDGE_HTTP_LISTEN=127.0.0.1:%d", ports[i]),
			fmt.Sprintf("BRIDGE_LEASE_OWNER=replica-%d-%d", i, gen))
		brs[i] = start(t, fmt.Sprintf("bridge-%d", i), logs[i], e, bridgeBin, "run", "--config", cfgPath)
	}
	for i := range replicaCount {
		ports[i] = freePort(t)
		logs[i] = filepath.Join(dir, fmt.Sprintf("bridge-%d.log", i))
		runReplica(i)
	}
	defer func() {
		bmu.Lock()
		for _, b := range brs {
			b.stop(t)
		}
		bmu.Unlock()
	}()
	defer func() {
		if keep := os.Getenv("CHAOS_KEEP_LOGS"); keep != "" && t.Failed() {
			for _, l := range logs {
				if b, err := os.ReadFile(l); err == nil {
					_ = os.WriteFile(filepath.Join(keep, filepath.Base(l)), b, 0o644)
				}
			}
		}
		if t.Failed() {
			for i := range replicaCount {
				t.Logf("bridge-%d log tail:\n%s", i, tail(logs[i], 30))
			}
			for i := range nc3.logs {
				t.Logf("nats-%d log tail:\n%s", i, tail(nc3.logs[i], 10))
			}
		}
	}()

	// Every agent connected, each connection run by one replica, the
	// three sharing them.
	spread := func() []int {
		var out []int
		for _, p := range ports {
			v, err := readReplica(p)
			if err != nil {
				return nil
			}
			out = append(out, len(v.runs()))
		}
		return out
	}
	balanced := func(s []int) bool {
		if len(s) != replicaCount {
			return false
		}
		sum := 0
		for _, n := range s {
			sum += n
			if n < replicaAgents/replicaCount-2 || n > replicaAgents/replicaCount+2 {
				return false
			}
		}
		return sum == replicaAgents
	}
	ctx := testutil.Context(t, 60*time.Second)
	for {
		connected := 0
		for _, r := range rooms {
			if emu.Connected(r.agent) {
				connected++
			}
		}
		s := spread()
		if connected == replicaAgents && balanced(s) {
			t.Logf("started: spread %v", s)
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("after start: %d of %d agents connected, spread %v", connected, replicaAgents, s)
		}
		time.Sleep(200 * time.Millisecond)
	}
	startSpread := spread()
	supersedesAtStart := emu.Supersedes()

	// Streams and buckets are replicated on the cluster.
	// The test's own connection goes to the server never killed, so it
	// hears every lifecycle event.
	nc, err := nats.Connect(strings.Split(nc3.urls(), ",")[0], nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond), nats.RetryOnFailedConnect(true))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"BRIDGE_EVENTS", "BRIDGE_COMMANDS", "KV_BRIDGE_LEASES", "KV_BRIDGE_MEMBERS"} {
		st, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		if r := st.CachedInfo().Config.Replicas; r != 3 {
			t.Errorf("stream %s has %d replicas, want 3", name, r)
		}
	}

	// Every lease_acquired, by connection, with the time the bridge stamped.
	var amu sync.Mutex
	acquired := map[string][]time.Time{}
	holders := map[string][]string{} // connection → "time instance" of each lease_acquired
	if _, err := nc.Subscribe("bridge.sys.band.*."+string(subjects.LifecycleLeaseAcquired), func(m *nats.Msg) {
		if ev, err := subjects.DecodeEvent(m.Data); err == nil {
			amu.Lock()
			acquired[ev.Connection] = append(acquired[ev.Connection], ev.Time)
			var who struct{ Instance string }
			_ = json.Unmarshal(ev.Data, &who)
			holders[ev.Connection] = append(holders[ev.Connection], ev.Time.Format("15:04:05.000")+" "+who.Instance)
			amu.Unlock()
		}
	}); err != nil {
		t.Fatal(err)
	}

	// The worker: replies to every message through managed dispatch.
	_, err = nc.QueueSubscribe("bridge.work.band.>", "workers", func(m *nats.Msg) {
		ev, err := subjects.DecodeEvent(m.Data)
		if err != nil {
			t.Errorf("work request is not an event: %v", err)
			return
		}
		var msg struct {
			ID       string `json:"id"`
			SenderID string `json:"sender_id"`
		}
		_ = json.Unmarshal(ev.Data, &msg)
		args, _ := json.Marshal(map[string]any{"content": "reply to " + msg.ID, "mentions": []map[string]string{{"id": msg.SenderID}}})
		r, _ := json.Marshal(subjects.WorkReply{Status: "processed", Commands: []subjects.CommandSpec{{Command: "send_message", Args: args}}})
		_ = m.Respond(r)
	})
	if err != nil {
		t.Fatal(err)
	}

	// Users post while replicas die.
	var pmu sync.Mutex
	posted := map[string][]string{} // room → message ids in posting order
	postedAt := map[string]time.Time{}
	var all []room
	var allIDs []string
	postDone := make(chan struct{})
	chaosEnd := time.Now().Add(replicaChaos)
	go func() { // owned: the test waits on postDone
		defer close(postDone)
		tick := time.NewTicker(time.Second / replicaPostRate)
		defer tick.Stop()
		for i := 0; time.Now().Before(chaosEnd); i++ {
			<-tick.C
			r := rooms[i%len(rooms)]
			m := emu.PostUserMessage(r.id, r.user, fmt.Sprintf("@%s question %d", r.conn, i))
			pmu.Lock()
			posted[r.id] = append(posted[r.id], m.ID)
			postedAt[m.ID] = time.Now()
			all = append(all, r)
			allIDs = append(allIDs, m.ID)
			pmu.Unlock()
		}
	}()

	// The chaos: a replica dies every replicaKillGap (SIGKILL, every third
	// a SIGTERM) and comes back as a new pod replicaDownFor later; one NATS
	// server is killed once and restarted.
	var deaths []death
	step := func(until time.Time) { time.Sleep(time.Until(until)) } // the schedule, not synchronisation
	t0 := time.Now()
	natsKilled := false
	var natsDown, natsUp time.Time // the NATS server's outage
	for k := 0; ; k++ {
		at := t0.Add(time.Duration(k+1) * replicaKillGap)
		if !at.Before(chaosEnd) {
			break
		}
		step(at)
		i := k % replicaCount
		sig := syscall.SIGKILL
		if k%3 == 2 {
			sig = syscall.SIGTERM
		}
		v, err := readReplica(ports[i])
		if err != nil {
			t.Logf("replica %d unreadable before its death: %v", i, err)
		}
		bmu.Lock()
		d := death{at: time.Now(), sig: sig, conns: v.runs()}
		_ = brs[i].cmd.Process.Signal(sig)
		bmu.Unlock()
		deaths = append(deaths, d)
		if sig == syscall.SIGTERM {
			brs[i].stop(t)
		} else {
			<-brs[i].done
		}
		if !natsKilled && k == 3 { // one NATS server, between two replica deaths
			step(d.at.Add(replicaKillGap / 2))
			natsDown = time.Now()
			nc3.procs[1].kill()
			natsKilled = true
			t.Logf("nats-1 killed at %s", time.Now().Format("15:04:05.000"))
			step(time.Now().Add(3 * time.Second))
			nc3.start(1)
			natsUp = time.Now()
		}
		step(d.at.Add(replicaDownFor))
		bmu.Lock()
		runReplica(i)
		bmu.Unlock()
	}
	<-postDone
	t.Logf("chaos over after %v", time.Since(t0).Round(time.Second))
	for _, d := range deaths {
		t.Logf("death at %s: %v of a replica running %v", d.at.Format("15:04:05.000"), d.sig, d.conns)
	}

	// Everything ends processed exactly once, each reply once, in room order.
	ctx = testutil.Context(t, 90*time.Second)
	unprocessed := func() int {
		pmu.Lock()
		defer pmu.Unlock()
		n := 0
		for j, id := range allIDs {
			if st, _ := emu.StatusFor(all[j].agent, id); st != bandemu.StatusProcessed {
				n++
			}
		}
		return n
	}
	for n := unprocessed(); n > 0; n = unprocessed() {
		if ctx.Err() != nil {
			pmu.Lock()
			for j, id := range allIDs {
				if st, atts := emu.StatusFor(all[j].agent, id); st != bandemu.StatusProcessed {
					t.Logf("%s: message %s is %s; attempts %+v", all[j].conn, id, st, atts)
				}
			}
			pmu.Unlock()
			for i, p := range ports {
				v, _ := readReplica(p)
				t.Logf("replica %d runs %v", i, v.runs())
			}
			t.Fatalf("%d of %d messages not processed after the chaos", n, len(allIDs))
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("all processed %v after the start of the chaos", time.Since(t0).Round(time.Second))
	processedTwice, duplicates, lost, orderBroken := 0, 0, 0, 0
	for j, id := range allIDs {
		_, atts := emu.StatusFor(all[j].agent, id)
		ok := 0
		for _, a := range atts {
			if a.Status == bandemu.AttemptSuccess {
				ok++
			}
		}
		if ok != 1 {
			processedTwice++
			t.Errorf("%s: message %s marked processed %d times; attempts %+v", all[j].conn, id, ok, atts)
		}
	}
	for _, r := range rooms {
		count := map[string]int{}
		var order []string
		for _, m := range emu.AgentMessages(r.id) {
			id := m.Content[strings.LastIndex(m.Content, " ")+1:]
			if count[id] == 0 {
				order = append(order, id)
			}
			count[id]++
		}
		for _, id := range posted[r.id] {
			switch c := count[id]; {
			case c == 0:
				lost++
				t.Errorf("%s: no reply to %s", r.conn, id)
			case c > 1:
				duplicates += c - 1
				t.Errorf("%s: %d replies to %s", r.conn, c, id)
			}
		}
		if !slices.Equal(order, posted[r.id][:min(len(order), len(posted[r.id]))]) {
			orderBroken++
			t.Errorf("%s: replies answer %v, posted %v (order broken)", r.conn, order, posted[r.id])
			logStored(t, js, subjects.Conn{Prefix: "bridge", Platform: "band", Name: r.conn}.Subject(subjects.KindEvent, r.id, "message_created").String())
			amu.Lock()
			t.Logf("%s: leases taken %v", r.conn, holders[r.conn])
			amu.Unlock()
			for _, id := range posted[r.id] {
				_, atts := emu.StatusFor(r.agent, id)
				t.Logf("%s: message %s posted %s attempts %+v", r.conn, id, postedAt[id].Format("15:04:05.000"), atts)
			}
		}
	}
	supersedes := emu.Supersedes() - supersedesAtStart
	if supersedes != 0 {
		t.Errorf("%d supersedes after the first leases (%d before), want 0", supersedes, supersedesAtStart)
	}

	// The spread once the last new replica has its share.
	var endSpread []int
	for endSpread = spread(); !balanced(endSpread); endSpread = spread() {
		if ctx.Err() != nil {
			t.Errorf("spread %v after the chaos, want %d ± 2 each", endSpread, replicaAgents/replicaCount)
			break
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Takeover times: from a replica's death to the first lease_acquired of
	// each connection it ran.
	amu.Lock()
	defer amu.Unlock()
	for _, ts := range acquired {
		slices.SortFunc(ts, time.Time.Compare)
	}
	// A takeover under way while the NATS server is down (or its streams
	// elect leaders again, a few TTLs after it is back) waits for NATS:
	// reported apart, not held to the replica targets.
	var killTimes, termTimes, duringOutage []time.Duration
	for _, d := range deaths {
		for _, c := range d.conns {
			i := slices.IndexFunc(acquired[c], func(at time.Time) bool { return at.After(d.at) })
			if i < 0 {
				t.Errorf("%s: no lease_acquired after its holder's %v", c, d.sig)
				continue
			}
			took := acquired[c][i].Sub(d.at)
			if !natsDown.IsZero() && d.at.Before(natsUp.Add(2*replicaTTL)) && acquired[c][i].After(natsDown) {
				duringOutage = append(duringOutage, took)
				continue
			}
			if d.sig == syscall.SIGKILL {
				killTimes = append(killTimes, took)
			} else {
				termTimes = append(termTimes, took)
			}
		}
	}
	kp50, kmax := quantiles(killTimes)
	tp50, tmax := quantiles(termTimes)
	// The targets are lease.ttl + 1s after kill -9 and 1s after SIGTERM;
	// the report says whether they were met. The test fails only past
	// another second, the slack of a loaded 2-core CI machine.
	const slack = time.Second
	if kmax > replicaTTL+time.Second+slack {
		t.Errorf("takeover after kill -9 took up to %v, want ≤ lease.ttl + 1s = %v (+%v slack)", kmax, replicaTTL+time.Second, slack)
	}
	if tmax > time.Second+slack {
		t.Errorf("takeover after SIGTERM took up to %v, want ≤ 1s (+%v slack)", tmax, slack)
	}
	kills, terms := 0, 0
	for _, d := range deaths {
		if d.sig == syscall.SIGKILL {
			kills++
		} else {
			terms++
		}
	}
	report := fmt.Sprintf("chaos: replicas=%d nats_servers=3 stream_replicas=3 agents=%d messages=%d lease_ttl=%v "+
		"sigkills=%d sigterms=%d nats_kills=%d spread_start=%v spread_end=%v "+
		"takeover_kill9_p50=%v takeover_kill9_max=%v (n=%d, target_met=%t) takeover_sigterm_p50=%v takeover_sigterm_max=%v (n=%d, target_met=%t) "+
		"takeover_during_nats_outage_max=%v (n=%d) supersedes_after_first_leases=%d lost=%d duplicate_replies=%d processed_more_than_once=%d order_broken=%d",
		replicaCount, replicaAgents, len(allIDs), replicaTTL, kills, terms, 1, startSpread, endSpread,
		kp50.Round(time.Millisecond), kmax.Round(time.Millisecond), len(killTimes), kmax <= replicaTTL+time.Second,
		tp50.Round(time.Millisecond), tmax.Round(time.Millisecond), len(termTimes), tmax <= time.Second,
		slices.Max(append(duringOutage, 0)).Round(time.Millisecond), len(duringOutage), supersedes, lost, duplicates, processedTwice, orderBroken)
	t.Log(report)
	fmt.Println(report)
	if path := os.Getenv("CHAOS_REPLICAS_REPORT"); path != "" {
		_ = os.WriteFile(path, []byte(report+"\n"), 0o644)
	}
}

// logStored logs every event stored on subj: stream sequence, store time
// and the message id, in stream order.
func logStored(t *testing.T, js jetstream.JetStream, subj string) {
	ctx := testutil.Context(t, 10*time.Second)
	c, err := js.OrderedConsumer(ctx, "BRIDGE_EVENTS", jetstream.OrderedConsumerConfig{FilterSubjects: []string{subj}})
	if err != nil {
		t.Logf("stored events of %s: %v", subj, err)
		return
	}
	for {
		m, err := c.Next(jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return
		}
		md, _ := m.Metadata()
		ev, _ := subjects.DecodeEvent(m.Data())
		var p struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal(ev.Data, &p)
		t.Logf("stored seq=%d at %s: %s (event %s)", md.Sequence.Stream, md.Timestamp.Format("15:04:05.000"), p.ID, ev.ID)
	}
}

func quantiles(ds []time.Duration) (p50, maxD time.Duration) {
	if len(ds) == 0 {
		return 0, 0
	}
	s := slices.Sorted(slices.Values(ds))
	return s[len(s)/2], s[len(s)-1]
}
