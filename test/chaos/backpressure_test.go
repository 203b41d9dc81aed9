//go:build chaos

package chaos

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bridgeworks/bridge/emulator/bandemu"
	"github.com/bridgeworks/bridge/internal/testutil"
)

// metric reads one unlabelled gauge from a Prometheus text page.
func metric(url, name string) (float64, bool) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			return f, err == nil
		}
	}
	return 0, false
}

// When no worker consumes, 50,000 events back up in the stream while the
// bridge's own memory stays bounded: its queues are bounded, and managed
// dispatch holds at most max-ack-pending messages.
func TestBackPressureBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("not in -short runs")
	}
	const total, nrooms = 50000, 10
	const heapBound = 64 << 20 // bytes
	dir := t.TempDir()
	bridgeBin := build(t, dir, "bridge", "github.com/bridgeworks/bridge/cmd/bridge")
	natsBin := build(t, dir, "nats-server", "github.com/nats-io/nats-server/v2")
	natsPort := freePort(t)
	natsURL := fmt.Sprintf("nats://127.0.0.1:%d", natsPort)
	ns := start(t, "nats-server", filepath.Join(dir, "nats.log"), nil, natsBin, "-a", "127.0.0.1", "-p", fmt.Sprint(natsPort), "-js", "-sd", filepath.Join(dir, "js"))
	defer ns.stop(t)

	emu := bandemu.New(bandemu.Options{})
	emuURL, err := emu.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	user := emu.AddUser("Load")
	var rooms []bandemu.Room
	for i := range nrooms {
		rooms = append(rooms, emu.AddRoom(fmt.Sprintf("r%d", i), user.ID))
	}
	httpPort := freePort(t)
	cfgPath := filepath.Join(dir, "bridge.toml")
	cfg := fmt.Sprintf("[nats]\nurl = %q\n[http]\nlisten = \"127.0.0.1:%d\"\n[[connection]]\nname = \"load\"\nplatform = \"band\"\n[connection.settings]\nbase_url = %q\nagent_id = %q\napi_key_env = \"BAND_API_KEY\"\n[[dispatch]]\nconnection = \"load\"\n",
		natsURL, httpPort, emuURL, emu.AgentID())
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	bridgeLog := filepath.Join(dir, "bridge.log")
	br := start(t, "bridge", bridgeLog, []string{"BAND_API_KEY=" + emu.APIKey()}, bridgeBin, "run", "--config", cfgPath)
	defer br.stop(t)
	defer func() {
		if t.Failed() {
			t.Logf("bridge log tail:\n%s", tail(bridgeLog, 40))
		}
	}()
	metrics := fmt.Sprintf("http://127.0.0.1:%d/metrics", httpPort)
	testutil.Eventually(t, 30*time.Second, func() bool { return emu.Connected(emu.AgentID()) }, "bridge connected")

	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	stored := func() int {
		ctx := testutil.Context(t, 5*time.Second)
		st, err := js.Stream(ctx, "BRIDGE_EVENTS")
		if err != nil {
			return 0
		}
		info, err := st.Info(ctx, jetstream.WithSubjectFilter("bridge.evt.band.load.*.message_created"))
		if err != nil {
			return 0
		}
		n := 0
		for _, c := range info.State.Subjects {
			n += int(c)
		}
		return n
	}

	maxHeap, maxGoroutines := 0.0, 0.0
	sample := func() {
		if h, ok := metric(metrics, "go_memstats_heap_inuse_bytes"); ok && h > maxHeap {
			maxHeap = h
		}
		if g, ok := metric(metrics, "go_goroutines"); ok && g > maxGoroutines {
			maxGoroutines = g
		}
	}
	start := time.Now()
	for i := range total {
		emu.PostUserMessage(rooms[i%nrooms].ID, user.ID, fmt.Sprintf("@Bridge Bot backlog %d", i))
		if i%2000 == 0 {
			sample()
		}
	}
	posted := time.Since(start)
	deadline := time.Now().Add(3 * time.Minute)
	for stored() < total {
		sample()
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d events stored", stored(), total)
		}
		time.Sleep(200 * time.Millisecond)
	}
	sample()
	t.Logf("backpressure: %d events backed up (posted in %s, stored in %s); bridge heap in use max %.1f MiB (bound %d MiB), goroutines max %.0f",
		total, posted.Round(time.Millisecond), time.Since(start).Round(time.Millisecond), maxHeap/(1<<20), heapBound>>20, maxGoroutines)
	if maxHeap == 0 {
		t.Fatal("no heap samples from /metrics")
	}
	if maxHeap > heapBound {
		t.Errorf("bridge heap reached %.1f MiB with workers absent; bound %d MiB", maxHeap/(1<<20), heapBound>>20)
	}
	if maxGoroutines > 3000 {
		t.Errorf("bridge ran %.0f goroutines with workers absent", maxGoroutines)
	}
}
