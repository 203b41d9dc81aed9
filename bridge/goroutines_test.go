package bridge

import (
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bridgeworks/bridge/emulator/bandemu"
	"github.com/bridgeworks/bridge/internal/testutil"
)

// TestIdleBandConnectionGoroutines is a measurement: it starts idleConns
// Band connections (one room each) against the emulator and logs the
// goroutines of the bridge side per connection, grouped by what they run.
// The emulator, the embedded NATS server and the test itself share the
// process; their goroutines are left out by their stacks. It is not
// parallel, so other tests' goroutines do not mix in.
//
// The main assertion is on the goroutines of the return path and the
// publisher (see shared): none may wait in them while the connection is
// idle (there were seven: the fetch loop, the in-progress heartbeat, the
// RPC subscription, the executor's drain watcher, the publisher's settle
// loop, the connection runner waiting beside its supervisor, and
// consume.Run waiting for the shutdown). No fetch loop and no jetstream
// pull goroutine may be left while idle. Besides the shared REST
// keep-alive connections (net/http's, at most 128 per host), an idle
// connection may hold one goroutine: its socket's reader (the runner
// blocked in Receive is gone, see runner).
func TestIdleBandConnectionGoroutines(t *testing.T) {
	if testing.Short() {
		t.Skip("measurement")
	}
	const idleConns = 24
	emu := bandemu.New(bandemu.Options{HeartbeatTimeout: 5 * time.Second})
	url, err := emu.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emu.Close)
	user := emu.AddUser("Dana Levi")
	var cfg strings.Builder
	env := map[string]string{}
	var agents []string
	for i := range idleConns {
		a := emu.AddAgent(fmt.Sprintf("Agent %d", i))
		emu.AddRoomFor(a.ID, fmt.Sprintf("room %d", i), user.ID)
		agents = append(agents, a.ID)
		env[fmt.Sprintf("KEY_%d", i)] = a.APIKey
		fmt.Fprintf(&cfg, "[[connection]]\nname = \"a%d\"\nplatform = \"band\"\nsettings = { base_url = %q, agent_id = %q, api_key_env = \"KEY_%d\" }\n",
			i, url, a.ID, i)
	}
	h := runBridge(t, bridgeSpec{config: "[dial]\nrate = 1000\nburst = 1000\n" + cfg.String(), registry: fastBand(), env: env})
	testutil.Eventually(t, 60*time.Second, func() bool {
		for _, id := range agents {
			if !emu.Connected(id) {
				return false
			}
		}
		return true
	}, "all %d agents connected", idleConns)
	// Every executor runs: it answers RPC (its command consumer is
	// released, so there is none to wait for).
	nc := client(t, h)
	for i := range idleConns {
		testutil.Eventually(t, 60*time.Second, func() bool {
			_, err := nc.Request(fmt.Sprintf("bridge.rpc.band.a%d.me", i), nil, 5*time.Second)
			return err == nil
		}, "connection a%d answers RPC", i)
	}
	// Idle: the same groups for a second (three Band heartbeats).
	var groups map[string]int
	var since time.Time
	testutil.Eventually(t, 60*time.Second, func() bool {
		prev := groups
		groups = bridgeGoroutines()
		if !maps.Equal(prev, groups) {
			since = time.Now()
		}
		return time.Since(since) > time.Second
	}, "goroutines settle")

	names := slices.Sorted(maps.Keys(groups))
	slices.SortStableFunc(names, func(a, b string) int { return groups[b] - groups[a] })
	total, checked := 0, 0
	var lines strings.Builder
	for _, n := range names {
		c := groups[n]
		if c < idleConns/2 {
			continue // fixed cost of the process, not per connection
		}
		total += c
		mark := " "
		if sharedWork(n) {
			checked += c
			mark = "*"
		}
		fmt.Fprintf(&lines, "\n %s %5.2f  %s", mark, float64(c)/idleConns, n)
	}
	t.Logf("%d idle Band connections: %.2f goroutines per connection (* checked: %.2f):%s",
		idleConns, float64(total)/idleConns, float64(checked)/idleConns, lines.String())
	for _, n := range names {
		// Parked consumers: no fetch loop and no pull of jetstream's while idle.
		perConn := groups[n] >= idleConns/2
		if perConn && (strings.HasPrefix(n, "consume.(*engine).fetchLoop") || strings.HasPrefix(n, "nats.go/jetstream.(*pullConsumer)")) {
			t.Errorf("%d idle connections still pull: %s", groups[n], n)
		}
	}
	if checked > 0 {
		t.Errorf("%.2f goroutines per idle connection in the return path and publisher; want none", float64(checked)/idleConns)
	}
	own := 0
	for _, n := range names {
		if groups[n] >= idleConns/2 && !strings.HasPrefix(n, "net/http.(*persistConn)") {
			own += groups[n]
		}
	}
	if own > idleConns {
		t.Errorf("%.2f goroutines per idle connection besides the REST pool; want 1 (the socket's reader)", float64(own)/idleConns)
	}
}

// sharedWork says whether a goroutine group waits in work that is shared
// per process or started on demand: the heartbeat, the consumer engine, the
// executor, core subscriptions' delivery, the publisher's settle, or the
// connection runner itself.
func sharedWork(group string) bool {
	for _, p := range []string{"ackflow.", "consume.", "cmdexec.", "nats.go.(*Conn).waitForMsgs", "bridge.(*publisher)", "bridge.(*Bridge).runConnection"} {
		if strings.HasPrefix(group, p) {
			return true
		}
	}
	return false
}

// bridgeGoroutines groups the process's goroutines that belong to the
// bridge (not to the emulator, the NATS server or the test) by the first
// frame of the bridge module or of nats.go in their stack, and what
// created them.
func bridgeGoroutines() map[string]int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	out := map[string]int{}
	for _, g := range strings.Split(string(buf), "\n\n") {
		if k := goroutineGroup(g); k != "" {
			out[k]++
		}
	}
	return out
}

func goroutineGroup(stack string) string {
	for _, skip := range []string{"nats-server", "emulator/", "testing.", "net/http.(*conn).serve", "net/http.(*Server)",
		"runtime/pprof", "bridge.bridgeGoroutines", "internal/testutil"} {
		if strings.Contains(stack, skip) {
			return ""
		}
	}
	top, first, created := "", "", ""
	for _, l := range strings.Split(stack, "\n")[1:] {
		if l == "" || strings.HasPrefix(l, "\t") {
			continue
		}
		fn := strings.ReplaceAll(l, "%2e", ".")
		for i := 1; i < len(fn); i++ { // cut the arguments: the first "(" not after a "."
			if fn[i] == '(' && fn[i-1] != '.' {
				fn = fn[:i]
				break
			}
		}
		if after, ok := strings.CutPrefix(fn, "created by "); ok {
			created, _, _ = strings.Cut(after, " in goroutine")
			continue
		}
		if top == "" {
			top = fn
		}
		if first == "" && (strings.Contains(fn, "bridgeworks/bridge/") || strings.Contains(fn, "nats-io/nats.go") ||
			strings.Contains(fn, "net/http.(*persistConn)") || strings.Contains(fn, "coder/websocket")) {
			first = fn
		}
	}
	if first == "" {
		first = top
	}
	short := func(s string) string {
		s = strings.ReplaceAll(s, "github.com/bridgeworks/bridge/", "")
		return strings.ReplaceAll(s, "github.com/nats-io/", "")
	}
	return short(first) + "  ← " + short(created)
}
