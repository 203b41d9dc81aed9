//go:build chaos

package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bridgeworks/bridge/claimcheck"
	"github.com/bridgeworks/bridge/emulator/bandemu"
	"github.com/bridgeworks/bridge/internal/testutil"
	"github.com/bridgeworks/bridge/subjects"
)

const (
	rooms    = 6
	messages = 330 // in all, spread over the rooms
	postRate = 15  // messages a second

	maxPayload = 64 << 10 // the nats-server's max_payload

	conn        = "support-bot" // the connection of the documented permissions
	bridgePass  = "chaos-bridge-pass"
	workerPass  = "chaos-worker-pass"
	workerInbox = "_INBOX_support-bot"
)

// proc is a child process whose output goes to a file.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
}

func start(t *testing.T, name, logPath string, env []string, bin string, args ...string) *proc {
	t.Helper()
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() { // owned: ends when the process does; kill/stop wait for it
		_ = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p
}

func (p *proc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

func (p *proc) stop(t *testing.T) {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Errorf("%s did not stop on SIGTERM; killing it", p.name)
		p.kill()
	}
}

func build(t *testing.T, dir, out, pkg string) string {
	t.Helper()
	bin := filepath.Join(dir, out)
	cmd := exec.Command("go", "build", "-o", bin, pkg)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	return bin
}

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func TestChaosNothingLost(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos test: not in -short runs")
	}
	dir := t.TempDir()
	bridgeBin := build(t, dir, "bridge", "github.com/bridgeworks/bridge/cmd/bridge")
	natsBin := build(t, dir, "nats-server", "github.com/nats-io/nats-server/v2")

	// nats-server, its store kept across its restarts.
	natsPort := freePort(t)
	natsURL := fmt.Sprintf("nats://127.0.0.1:%d", natsPort)
	natsLog := filepath.Join(dir, "nats.log")
	// A small max_payload, so that one chat message in the flow is larger.
	// It runs the least-privilege permissions of docs/security.md verbatim:
	// the bridge and the worker connect as the users documented there.
	natsConf := filepath.Join(dir, "nats.conf")
	conf := fmt.Sprintf("max_payload: %d\nBRIDGE_NATS_PASSWORD: %q\nSUPPORT_BOT_NATS_PASSWORD: %q\n", maxPayload, bridgePass, workerPass) +
		strings.Replace(testutil.DocumentedNATSConfig(t, "../../docs/security.md"), `store_dir: "/var/lib/nats"`, fmt.Sprintf("store_dir: %q", filepath.Join(dir, "js")), 1)
	if err := os.WriteFile(natsConf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	natsArgs := []string{"-c", natsConf, "-a", "127.0.0.1", "-p", fmt.Sprint(natsPort), "-n", "chaos"}
	ns := start(t, "nats-server", natsLog, nil, natsBin, natsArgs...)
	defer func() { ns.stop(t) }()

	// The platform.
	emu := bandemu.New(bandemu.Options{HeartbeatTimeout: 3 * time.Second})
	emuURL, err := emu.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	var rs []bandemu.Room
	var us []bandemu.User
	for i := range rooms {
		u := emu.AddUser(fmt.Sprintf("User %d", i))
		us = append(us, u)
		rs = append(rs, emu.AddRoom(fmt.Sprintf("room %d", i), u.ID))
	}

	// The bridge, as a real process.
	httpPort := freePort(t)
	cfgPath := filepath.Join(dir, "bridge.toml")
	cfg := fmt.Sprintf(`
[log]
level = "debug"
[nats]
url = %q
user = "bridge"
password_env = "BRIDGE_NATS_PASSWORD"
[http]
listen = "127.0.0.1:%d"
[lease]
ttl = "3s"
owner = "chaos"
[[connection]]
name = "support-bot"
platform = "band"
command_backoff_max = "1s"
retry_after_max = "2s"
[connection.settings]
base_url = %q
agent_id = %q
api_key_env = "BAND_API_KEY"
heartbeat_interval = "500ms"
[[dispatch]]
connection = "support-bot"
timeout = "3s"
max_attempts = 1000
backoff_initial = "100ms"
backoff_max = "1s"
`, natsURL, httpPort, emuURL, emu.AgentID())
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	// Two bridge processes with the same config (only the HTTP port differs,
	// from the environment): one holds the connection, the other stands by;
	// each kill below hits the one holding it.
	bridgeLog := filepath.Join(dir, "bridge.log")
	bridgeEnv := []string{"BAND_API_KEY=" + emu.APIKey(), "BRIDGE_NATS_PASSWORD=" + bridgePass}
	twinPort := freePort(t)
	httpOf := []int{httpPort, twinPort}
	runBridge := func(i int) *proc {
		env := append(slices.Clone(bridgeEnv), fmt.Sprintf("BRIDGE_HTTP_LISTEN=127.0.0.1:%d", httpOf[i]))
		return start(t, fmt.Sprintf("bridge-%d", i), bridgeLog, env, bridgeBin, "run", "--config", cfgPath)
	}
	var bmu sync.Mutex
	brs := []*proc{runBridge(0), runBridge(1)}
	defer func() {
		bmu.Lock()
		for _, b := range brs {
			b.stop(t)
		}
		bmu.Unlock()
	}()
	defer func() {
		if t.Failed() {
			if keep := os.Getenv("CHAOS_KEEP_LOG"); keep != "" {
				b, _ := os.ReadFile(bridgeLog)
				_ = os.WriteFile(keep, b, 0o644)
			}
			t.Logf("bridge log tail:\n%s", tail(bridgeLog, 60))
			t.Logf("nats log tail:\n%s", tail(natsLog, 20))
		}
	}()

	// The worker: answers every message with a reply naming it; counts
	// deliveries per message (at-least-once: duplicates are allowed, and
	// reported).
	nc, err := nats.Connect(natsURL, nats.UserInfo("support-bot-worker", workerPass), nats.CustomInboxPrefix(workerInbox),
		nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond), nats.RetryOnFailedConnect(true))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	var wmu sync.Mutex
	deliveries := map[string]int{}
	_, err = nc.QueueSubscribe("bridge.work.band."+conn+".>", "workers", func(m *nats.Msg) {
		ev, err := subjects.DecodeEvent(m.Data)
		if err != nil {
			t.Errorf("work request is not an event: %v", err)
			return
		}
		if ref, ok := ev.Ref(); ok { // the message larger than max_payload
			fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			ev.Data, err = claimcheck.Fetch(fctx, js, ref)
			cancel()
			if err != nil {
				t.Logf("payload by reference not fetched (the attempt times out and is retried): %v", err)
				return
			}
		}
		var msg struct {
			ID       string `json:"id"`
			SenderID string `json:"sender_id"`
		}
		_ = json.Unmarshal(ev.Data, &msg)
		wmu.Lock()
		deliveries[msg.ID]++
		wmu.Unlock()
		args, _ := json.Marshal(map[string]any{"content": "reply to " + msg.ID, "mentions": []map[string]string{{"id": msg.SenderID}}})
		r, _ := json.Marshal(subjects.WorkReply{Status: "processed", Commands: []subjects.CommandSpec{{Command: "send_message", Args: args}}})
		_ = m.Respond([]byte(`{"status":"processing"}`))
		_ = m.Respond(r)
	})
	if err != nil {
		t.Fatal(err)
	}

	// The flow of user messages.
	var pmu sync.Mutex
	posted := map[string][]string{} // room → message ids in posting order
	var all []string
	postDone := make(chan struct{})
	go func() { // owned: the test waits on postDone
		defer close(postDone)
		tick := time.NewTicker(time.Second / postRate)
		defer tick.Stop()
		for i := range messages {
			<-tick.C
			r := i % rooms
			text := fmt.Sprintf("@Bridge Bot question %d", i)
			if i == messages/2 {
				text += " " + strings.Repeat("long ", 2*maxPayload/5) // over max_payload
			}
			m := emu.PostUserMessage(rs[r].ID, us[r].ID, text)
			pmu.Lock()
			posted[rs[r].ID] = append(posted[rs[r].ID], m.ID)
			all = append(all, m.ID)
			pmu.Unlock()
		}
	}()

	// A worker that tries to act beyond its connection through the bridge:
	// results and RPC replies aimed at commands, events, work requests, the
	// lease bucket, the JetStream API and the bridge's own inboxes.
	forgeDone := make(chan struct{})
	forged := 0
	go func() { // owned: the test waits on forgeDone
		defer close(forgeDone)
		targets := []string{
			"bridge.evt.band." + conn + ".forged.message_created",
			"bridge.cmd.band." + conn + ".forged.send_message",
			"bridge.work.band." + conn + ".forged.message_created",
			"$KV.BRIDGE_LEASES." + conn,
			"$KV.BRIDGE_EXECUTED.forged",
			"$JS.API.STREAM.PURGE.BRIDGE_EVENTS",
			"_BRIDGE_INBOX.forged",
		}
		tick := time.NewTicker(700 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-postDone:
				return
			case <-tick.C:
			}
			to := targets[i%len(targets)]
			cmd := nats.NewMsg(fmt.Sprintf("bridge.cmd.band.%s.%s.me", conn, rs[0].ID))
			cmd.Header.Set(subjects.HeaderMsgID, fmt.Sprintf("forge-%d", i))
			cmd.Header.Set(subjects.HeaderReplyTo, to)
			cmd.Data = []byte("{}")
			_ = nc.PublishMsg(cmd)
			_ = nc.PublishMsg(&nats.Msg{Subject: "bridge.rpc.band." + conn + ".me", Reply: to, Data: []byte("{}")})
			forged++
		}
	}()

	// The chaos, while messages flow.
	kills, bridgeRestarts, natsRestarts := 0, 0, 0
	step := func(d time.Duration) { time.Sleep(d) } // the schedule, not synchronisation
	killBridge := func(pause time.Duration) {
		bmu.Lock()
		defer bmu.Unlock()
		i := holder(httpOf)
		brs[i].kill()
		kills++
		step(pause)
		brs[i] = runBridge(i)
		bridgeRestarts++
	}
	step(2 * time.Second)
	killBridge(0)
	step(2 * time.Second)
	emu.DropSockets()
	step(1500 * time.Millisecond)
	emu.StallHeartbeats(true)
	step(2 * time.Second)
	emu.StallHeartbeats(false)
	step(time.Second)
	emu.FailREST(20, 429, 300*time.Millisecond)
	step(1500 * time.Millisecond)
	killBridge(time.Second)
	step(2 * time.Second)
	ns.stop(t)
	step(500 * time.Millisecond)
	ns = start(t, "nats-server", natsLog, nil, natsBin, natsArgs...)
	natsRestarts++
	step(2 * time.Second)
	emu.FailREST(20, 503, 200*time.Millisecond)
	step(1500 * time.Millisecond)
	emu.FailREST(3, 429, 1_000_000_000*time.Second) // "Retry-After: 1000000000": waited retry_after_max
	step(1500 * time.Millisecond)
	emu.RejectUpgrades(3, 429, 500*time.Millisecond)
	emu.DropSockets()
	step(1500 * time.Millisecond)
	killBridge(0)
	<-postDone

	<-forgeDone

	// Everything ends processed, each reply exactly once, in room order.
	ctx := testutil.Context(t, 3*time.Minute)
	pending := func() int {
		n := 0
		for _, id := range all {
			if st, _ := emu.Status(id); st != bandemu.StatusProcessed {
				n++
			}
		}
		return n
	}
	for pending() > 0 {
		if ctx.Err() != nil {
			t.Fatalf("%d of %d messages not processed after the chaos", pending(), len(all))
		}
		time.Sleep(200 * time.Millisecond)
	}
	// No forged reply landed: nothing stored on the forged subjects, the
	// lease still names a bridge process.
	bjs := adminJetStream(t, natsURL)
	for stream, subj := range map[string]string{
		"BRIDGE_EVENTS":   "bridge.evt.band." + conn + ".forged.>",
		"BRIDGE_COMMANDS": "bridge.cmd.band." + conn + ".forged.>",
	} {
		st, err := bjs.Stream(ctx, stream)
		if err != nil {
			t.Fatalf("stream %s: %v", stream, err)
		}
		info, err := st.Info(ctx, jetstream.WithSubjectFilter(subj))
		if err != nil {
			t.Fatalf("stream %s: %v", stream, err)
		}
		if n := len(info.State.Subjects); n > 0 {
			t.Errorf("a forged reply-to stored %d messages on %s", n, subj)
		}
	}
	if kv, err := bjs.KeyValue(ctx, "BRIDGE_LEASES"); err == nil {
		if e, err := kv.Get(ctx, conn); err == nil && !strings.Contains(string(e.Value()), `"instance"`) {
			t.Errorf("the lease was overwritten by a forged reply: %q", e.Value())
		}
	}

	lost, dupReplies, orderBroken := 0, 0, 0
	for _, r := range rs {
		replies := emu.AgentMessages(r.ID)
		count := map[string]int{}
		var order []string
		for _, m := range replies {
			id := m.Content[strings.LastIndex(m.Content, " ")+1:]
			if count[id] == 0 {
				order = append(order, id)
			}
			count[id]++
		}
		for _, id := range posted[r.ID] {
			switch c := count[id]; {
			case c == 0:
				lost++
				t.Errorf("room %s: no reply to %s", r.ID, id)
			case c > 1:
				dupReplies += c - 1
				t.Errorf("room %s: %d replies to %s", r.ID, c, id)
			}
		}
		for i := range min(len(order), len(posted[r.ID])) {
			if order[i] != posted[r.ID][i] {
				orderBroken++
				t.Errorf("room %s: reply %d answers %s, want %s (order broken)", r.ID, i, order[i], posted[r.ID][i])
				break
			}
		}
	}
	wmu.Lock()
	dupDeliveries := 0
	for _, n := range deliveries {
		dupDeliveries += n - 1
	}
	wmu.Unlock()
	report := fmt.Sprintf("chaos: messages=%d rooms=%d bridge_kills=%d bridge_restarts=%d nats_restarts=%d socket_drops=2 heartbeat_stalls=1 over_max_payload=1 bridge_processes=2 forged_reply_tos=%d rest_429=20 rest_503=20 rest_429_huge=3 upgrade_429=3 lost=%d duplicate_replies=%d order_broken=%d duplicate_deliveries_to_worker=%d",
		len(all), rooms, kills, bridgeRestarts, natsRestarts, forged, lost, dupReplies, orderBroken, dupDeliveries)
	t.Log(report)
	fmt.Println(report)
	if path := os.Getenv("CHAOS_REPORT"); path != "" {
		_ = os.WriteFile(path, []byte(report+"\n"), 0o644)
	}
}

// holder returns which of the bridge processes (by HTTP port) holds the
// connection: the one not standing by. Either may be briefly unreachable
// (just restarted); then the first is taken.
func holder(ports []int) int {
	for i, p := range ports {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/status", p))
		if err != nil {
			continue
		}
		var st struct {
			Connections []struct{ State string }
		}
		err = json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if err == nil && len(st.Connections) > 0 && st.Connections[0].State != "standby" && st.Connections[0].State != "starting" {
			return i
		}
	}
	return 0
}

// adminJetStream reads the streams as the bridge user (the worker may not).
func adminJetStream(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url, nats.UserInfo("bridge", bridgePass), nats.CustomInboxPrefix("_BRIDGE_INBOX"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}
