package bridge

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/bridgeworks/bridge/config"
	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/emulator/bandemu"
	"github.com/bridgeworks/bridge/internal/testutil"
)

// freeAddr returns a loopback address nothing listens on (for a server
// started later in the test).
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func httpStatus(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// metricValue returns the value of the sample line that starts with
// series (name and labels), or -1.
func metricValue(t *testing.T, addr, series string) float64 {
	t.Helper()
	for _, l := range strings.Split(get(t, "http://"+addr+"/metrics"), "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", l, err)
			}
			return f
		}
	}
	return -1
}

// TestHealthBeforeNATS: with NATS not there at start, /healthz answers at
// once (a liveness probe passes), /readyz says 503 naming NATS, and the
// bridge becomes ready once NATS comes up.
func TestHealthBeforeNATS(t *testing.T) {
	t.Parallel()
	natsAddr, httpAddr := freeAddr(t), freeAddr(t)
	c, err := config.Parse(fmt.Appendf(nil, "[http]\nlisten = %q\n[nats]\nurl = \"nats://%s\"\n", httpAddr, natsAddr), nil)
	if err != nil {
		t.Fatal(err)
	}
	ready := make(chan Info, 1)
	b, err := New(c, Options{Log: testutil.Logger(t), Registry: connector.Registry{}, Version: "v9.9.9-test", OnReady: func(i Info) { ready <- i }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})

	testutil.Eventually(t, 5*time.Second, func() bool { code, _ := httpStatus("http://" + httpAddr + "/healthz"); return code == 200 },
		"/healthz answers 200 while NATS is down")
	code, body := httpStatus("http://" + httpAddr + "/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "nats not connected yet") || !strings.Contains(body, natsAddr) {
		t.Errorf("/readyz before NATS: %d %q, want 503 naming NATS and where it is sought", code, body)
	}
	if !strings.Contains(get(t, "http://"+httpAddr+"/status"), `"connected": false`) {
		t.Errorf("/status does not say NATS is not connected")
	}
	if v := metricValue(t, httpAddr, "bridge_nats_connected"); v != 0 {
		t.Errorf("bridge_nats_connected = %v before NATS, want 0", v)
	}
	select {
	case <-ready:
		t.Fatal("ready without NATS")
	default:
	}

	host, port, _ := net.SplitHostPort(natsAddr)
	p, _ := strconv.Atoi(port)
	srv, err := server.NewServer(&server.Options{Host: host, Port: p, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Run ended: %v", err)
	case <-time.After(40 * time.Second):
		t.Fatal("not ready 40s after NATS came up")
	}
	if code, body := httpStatus("http://" + httpAddr + "/readyz"); code != 200 {
		t.Errorf("/readyz once NATS is up: %d %q", code, body)
	}
	if v := metricValue(t, httpAddr, "bridge_nats_connected"); v != 1 {
		t.Errorf("bridge_nats_connected = %v, want 1", v)
	}
	if !strings.Contains(get(t, "http://"+httpAddr+"/metrics"), `bridge_build_info{go="go`) ||
		!strings.Contains(get(t, "http://"+httpAddr+"/metrics"), `version="v9.9.9-test"} 1`) {
		t.Errorf("no bridge_build_info with the version:\n%s", grep(get(t, "http://"+httpAddr+"/metrics"), "build_info"))
	}
}

// A supersede is waited out for supersede_cooloff, then the connection
// takes the identity back; meanwhile /status shows superseded with the
// time of the next try, the metric has it, and the pod stays ready.
func TestBandSupersedeCoolsOffThenReconnects(t *testing.T) {
	t.Parallel()
	const cooloff = time.Second
	env := newBandEnv(t, bandemu.Options{})
	env.spec.tweak = func(c *config.Config) { c.Connection[0].SupersedeCooloff = config.Duration(cooloff) }
	h := runBridge(t, env.spec)
	addr := h.info.HTTPAddr
	waitState(t, h, StateConnected)
	if v := metricValue(t, addr, `bridge_lease_held{connection="agent"}`); v != 1 {
		t.Errorf("bridge_lease_held = %v while running the connection, want 1", v)
	}
	at := time.Now()
	env.emu.Supersede()
	waitState(t, h, StateSuperseded)
	st := connStatus(addr)
	if st.RetryAt.Before(at.Add(cooloff)) || st.RetryAt.After(time.Now().Add(cooloff*3/2)) {
		t.Errorf("retry_at %s is not a cool-off (%s to 1.5×) after the supersede at %s", st.RetryAt, cooloff, at)
	}
	if !strings.Contains(st.LastError, "superseded") {
		t.Errorf("last_error %q does not say superseded", st.LastError)
	}
	if v := metricValue(t, addr, `bridge_connection_retry_timestamp_seconds{connection="agent"}`); v < float64(at.Unix()) {
		t.Errorf("bridge_connection_retry_timestamp_seconds = %v while superseded", v)
	}
	if code, body := httpStatus("http://" + addr + "/readyz"); code != 200 {
		t.Errorf("/readyz while superseded: %d %q (superseded must not make the pod unready)", code, body)
	}
	waitState(t, h, StateConnected)
	var upgrades []time.Time
	for _, r := range env.emu.Requests() {
		if r.Path == bandemu.SocketPath && r.Time.After(at) {
			upgrades = append(upgrades, r.Time)
		}
	}
	if len(upgrades) == 0 || upgrades[0].Sub(at) < cooloff {
		t.Errorf("took the identity back %v after the supersede, before the %s cool-off", upgrades, cooloff)
	}
	if v := metricValue(t, addr, `bridge_connection_retry_timestamp_seconds{connection="agent"}`); v != 0 {
		t.Errorf("bridge_connection_retry_timestamp_seconds = %v once connected, want 0", v)
	}
	if st := connStatus(addr); !st.RetryAt.IsZero() {
		t.Errorf("retry_at %s once connected", st.RetryAt)
	}
}

// A key refused with 401 keeps being retried with long waits (state
// refused, the pod ready); the key file is read at every try, so a
// rotated key heals the connection without a restart.
func TestBandRefusedKeyHealsFromRotatedFile(t *testing.T) {
	t.Parallel()
	env := newBandEnv(t, bandemu.Options{})
	keyFile := filepath.Join(t.TempDir(), "api-key")
	if err := os.WriteFile(keyFile, []byte(env.emu.APIKey()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const rotated = "rotated-key-0001"
	if !env.emu.RotateKey(env.emu.AgentID(), rotated) { // the file's key is refused from now on
		t.Fatal("RotateKey")
	}
	env.spec.config = strings.Replace(env.spec.config, `api_key_env = "BAND_KEY"`, fmt.Sprintf("api_key_file = %q", keyFile), 1)
	env.spec.tweak = func(c *config.Config) { c.Connection[0].RefusedRetryMax = config.Duration(200 * time.Millisecond) }
	h := runBridge(t, env.spec)
	addr := h.info.HTTPAddr
	waitState(t, h, StateRefused)
	st := connStatus(addr)
	if !strings.Contains(st.LastError, "401") {
		t.Errorf("last_error %q does not name the 401", st.LastError)
	}
	if code, body := httpStatus("http://" + addr + "/readyz"); code != 200 {
		t.Errorf("/readyz while refused: %d %q", code, body)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return recorded(env.emu, false, 401) && len(env.emu.Requests()) >= 4 },
		"the refused key is tried again")
	tmp := keyFile + ".new"
	if err := os.WriteFile(tmp, []byte(rotated+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, keyFile); err != nil { // as a Kubernetes secret volume swaps it
		t.Fatal(err)
	}
	waitState(t, h, StateConnected)
}

// A socket upgrade refused with 403 at connect is a refusal too: state
// refused until the platform takes the socket again.
func TestBandUpgrade403IsRefusedThenHeals(t *testing.T) {
	t.Parallel()
	env := newBandEnv(t, bandemu.Options{})
	env.emu.RejectUpgrades(1<<20, http.StatusForbidden, 0)
	env.spec.tweak = func(c *config.Config) { c.Connection[0].RefusedRetryMax = config.Duration(200 * time.Millisecond) }
	h := runBridge(t, env.spec)
	// One snapshot must show all three: the state may move on to the next
	// try 200ms later.
	testutil.Eventually(t, 20*time.Second, func() bool {
		st := connStatus(h.info.HTTPAddr)
		return st.State == StateRefused && strings.Contains(st.LastError, "403") && !st.RetryAt.IsZero()
	}, "status never showed refused with the 403 and the next try")
	env.emu.RejectUpgrades(0, 0, 0)
	waitState(t, h, StateConnected)
}

// Command metrics are labelled only with the names the platform knows:
// junk names a worker publishes all count under "other".
func TestCommandMetricLabelsOnlyKnownNames(t *testing.T) {
	t.Parallel()
	env := newBandEnv(t, bandemu.Options{})
	room := env.emu.AddRoom("ops", env.user.ID)
	h := runBridge(t, env.spec)
	waitState(t, h, StateConnected)
	res := results(t, h)
	for i := range 20 {
		publishCmd(t, h, room.ID, fmt.Sprintf("junk_%02d", i), fmt.Sprintf("junk-%d", i), map[string]any{})
	}
	publishCmd(t, h, room.ID, "post_event", "known", map[string]any{"content": "hi", "message_type": "thought"})
	for i := range 20 {
		res(fmt.Sprintf("junk-%d", i))
	}
	if r := res("known"); !r.OK {
		t.Fatalf("post_event: %+v", r)
	}
	m := get(t, "http://"+h.info.HTTPAddr+"/metrics")
	if strings.Contains(m, "junk_") {
		t.Errorf("a worker's command name became a label:\n%s", grep(m, "junk_"))
	}
	if v := metricValue(t, h.info.HTTPAddr, `bridge_commands_total{command="other",connection="agent",outcome="bad_request",platform="band"}`); v != 20 {
		t.Errorf("unknown commands under other: %v, want 20\n%s", v, grep(m, "bridge_commands_total"))
	}
	if !strings.Contains(m, `bridge_commands_total{command="post_event",connection="agent",outcome="ok",platform="band"} 1`) {
		t.Errorf("the known command has no label of its own:\n%s", grep(m, "bridge_commands_total"))
	}
}

// /debug/pprof is served only with http.pprof on.
func TestPProfBehindFlag(t *testing.T) {
	t.Parallel()
	for _, on := range []bool{false, true} {
		h := runBridge(t, bridgeSpec{tweak: func(c *config.Config) { c.HTTP.PProf = on }})
		code, body := httpStatus("http://" + h.info.HTTPAddr + "/debug/pprof/goroutine?debug=1")
		if on && (code != 200 || !strings.Contains(body, "goroutine profile")) {
			t.Errorf("pprof on: %d %.80q", code, body)
		}
		if !on && code != http.StatusNotFound {
			t.Errorf("pprof off: %d, want 404", code)
		}
	}
}
