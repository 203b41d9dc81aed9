package bridge

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/bridgeworks/bridge/config"
	"github.com/bridgeworks/bridge/emulator/bandemu"
	"github.com/bridgeworks/bridge/internal/testutil"
)

// Distinctive secrets: plain [a-z0-9-] so that neither JSON nor URL
// encoding could hide one from the search.
const (
	secretBandKey  = "band-key-s3cr3t-8f41d0c2"
	secretWrongKey = "band-wrong-key-s3cr3t-77a9e5"
	secretNATSPass = "nats-pw-s3cr3t-c05e12ab"
	secretWrongPW  = "nats-wrong-pw-s3cr3t-3d9b"
)

var allSecrets = []string{secretBandKey, secretWrongKey, secretNATSPass, secretWrongPW}

// logBuffer is a goroutine-safe log sink.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) contains(s string) bool { return strings.Contains(b.String(), s) }

// authNATS is an external nats-server with user/password auth that can be
// restarted on the same port and store.
type authNATS struct {
	t     *testing.T
	mu    sync.Mutex
	srv   *server.Server
	port  int
	store string
}

func startAuthNATS(t *testing.T) *authNATS {
	t.Helper()
	a := &authNATS{t: t, port: -1, store: t.TempDir()}
	a.start()
	t.Cleanup(a.stop)
	return a
}

func (a *authNATS) start() {
	a.t.Helper()
	srv, err := server.NewServer(&server.Options{
		ServerName: "secrets-test", Host: "127.0.0.1", Port: a.port, JetStream: true, StoreDir: a.store,
		NoSigs: true, NoLog: true, Users: []*server.User{{Username: "bridge", Password: secretNATSPass}},
	})
	if err != nil {
		a.t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		a.t.Fatal("nats-server not ready")
	}
	a.mu.Lock()
	a.srv, a.port = srv, srv.Addr().(*net.TCPAddr).Port
	a.mu.Unlock()
}

func (a *authNATS) stop() {
	a.mu.Lock()
	srv := a.srv
	a.srv = nil
	a.mu.Unlock()
	if srv != nil {
		srv.Shutdown()
		srv.WaitForShutdown()
	}
}

// url carries the credentials, as an operator's BRIDGE_NATS_URL might.
func (a *authNATS) url(pass string) string {
	return "nats://bridge:" + pass + "@127.0.0.1:" + strconv.Itoa(a.port)
}

// runLogged starts a bridge that logs at trace level into buf; env is both
// the environment of config.Parse and of secret lookup.
func runLogged(t *testing.T, cfgText string, env map[string]string, buf *logBuffer) (*harness, error) {
	t.Helper()
	var envList []string
	for k, v := range env {
		envList = append(envList, k+"="+v)
	}
	c, err := config.Parse([]byte("[http]\nlisten = \"127.0.0.1:0\"\n"+cfgText), envList)
	if err != nil {
		t.Fatal(err)
	}
	for i := range c.Connection { // test-sized reconnect waits
		c.Connection[i].ReconnectInitial = config.Duration(5 * time.Millisecond)
		c.Connection[i].ReconnectMax = config.Duration(50 * time.Millisecond)
	}
	log := zerolog.New(buf).Level(zerolog.TraceLevel).With().Timestamp().Logger()
	ready := make(chan Info, 1)
	b, err := New(c, Options{
		Log: log, Registry: fastBand(), OnReady: func(i Info) { ready <- i },
		LookupEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	var once sync.Once
	h := &harness{stop: func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}}
	select {
	case h.info = <-ready:
		t.Cleanup(h.stop)
		return h, nil
	case err := <-done:
		cancel()
		return nil, err
	case <-time.After(20 * time.Second):
		cancel()
		t.Fatal("bridge not ready")
	}
	return nil, nil
}

// connStates reads every connection's state from /status.
func connStates(t *testing.T, addr string) map[string]State {
	var st struct{ Connections []ConnStatus }
	_ = json.Unmarshal([]byte(get(t, "http://"+addr+"/status")), &st)
	out := map[string]State{}
	for _, c := range st.Connections {
		out[c.Name] = c.State
	}
	return out
}

// recorded reports whether emu answered a socket upgrade (upgrade) or a
// REST call (!upgrade) with status.
func recorded(emu *bandemu.Server, upgrade bool, status int) bool {
	for _, r := range emu.Requests() {
		if (r.Path == bandemu.SocketPath) == upgrade && r.Status == status {
			return true
		}
	}
	return false
}

func noSecrets(t *testing.T, where, text string) {
	t.Helper()
	for _, s := range allSecrets {
		if i := strings.Index(text, s); i >= 0 {
			lo, hi := max(0, i-200), min(len(text), i+len(s)+50)
			t.Errorf("%s leaks secret %q: …%s…", where, s, text[lo:hi])
		}
	}
}

// TestSecretsNeverLogged runs the bridge with a distinctive Band API key and
// NATS password, drives every path that logs (a wrong key: 401 on REST;
// 429/503 on REST and on upgrades; socket drops and reconnects; a NATS
// server restart; supersede), and asserts that no secret appears in the log,
// on /status, on /metrics or in lifecycle events. The 403 on the socket
// upgrade is TestSecretsSocketRefused.
func TestSecretsNeverLogged(t *testing.T) {
	t.Parallel()
	emu := bandemu.New(bandemu.Options{APIKey: secretBandKey, HeartbeatTimeout: 2 * time.Second})
	emuURL, err := emu.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emu.Close)
	user := emu.AddUser("Dana Levi")
	room := emu.AddRoom("secrets", user.ID)
	ns := startAuthNATS(t)
	cfg := fmt.Sprintf(`[nats]
user = "bridge"
password_env = "NATS_PW"
[[connection]]
name = "agent"
platform = "band"
[connection.settings]
base_url = %[1]q
agent_id = %[2]q
api_key_env = "BAND_KEY"
[[connection]]
name = "wrongkey"
platform = "band"
[connection.settings]
base_url = %[1]q
api_key_env = "WRONG_KEY"
`, emuURL, emu.AgentID())
	env := map[string]string{
		"BAND_KEY": secretBandKey, "WRONG_KEY": secretWrongKey, "NATS_PW": secretNATSPass,
		"BRIDGE_NATS_URL": ns.url(secretNATSPass),
	}
	var logs logBuffer
	h, err := runLogged(t, cfg, env, &logs)
	if err != nil {
		t.Fatalf("bridge did not start: %v", err)
	}
	addr := h.info.HTTPAddr

	// Lifecycle events carry error texts too: collect them.
	watch, err := nats.Connect(ns.url(secretNATSPass), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(watch.Close)
	var sysMu sync.Mutex
	var sysEvents []string
	if _, err := watch.Subscribe("bridge.sys.>", func(m *nats.Msg) {
		sysMu.Lock()
		sysEvents = append(sysEvents, m.Subject+" "+string(m.Data))
		sysMu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	if err := watch.Flush(); err != nil {
		t.Fatal(err)
	}

	const wait = 20 * time.Second
	testutil.Eventually(t, wait, func() bool {
		st := connStates(t, addr)
		return st["agent"] == StateConnected && st["wrongkey"] == StateRefused
	}, "agent connected and wrongkey refused (401)")

	// Upgrades refused with 429, then 503, after socket drops.
	for _, status := range []int{429, 503} {
		emu.RejectUpgrades(1, status, 0)
		emu.DropSockets()
		testutil.Eventually(t, wait, func() bool { return recorded(emu, true, status) && emu.Connected(emu.AgentID()) },
			"upgrade refused with %d, then reconnected", status)
	}
	// REST calls of the catch-up after a drop fail with 429, then 503.
	for _, status := range []int{429, 503} {
		emu.FailREST(1, status, 0)
		emu.DropSockets()
		testutil.Eventually(t, wait, func() bool { return recorded(emu, false, status) && emu.Connected(emu.AgentID()) },
			"REST call refused with %d, then reconnected", status)
	}
	// Traffic still flows: a message is published.
	emu.PostUserMessage(room.ID, user.ID, "@Bridge Bot hello")
	testutil.Eventually(t, wait, func() bool { return logs.contains("nats connected") }, "nats connected logged")

	// NATS restarts: the bridge logs the disconnect and the reconnect.
	ns.stop()
	testutil.Eventually(t, wait, func() bool { return logs.contains("nats disconnected") }, "nats disconnect logged")
	ns.start()
	testutil.Eventually(t, wait, func() bool { return logs.contains("nats reconnected") }, "nats reconnect logged")

	// Supersede ends the agent connection for good.
	emu.Supersede()
	testutil.Eventually(t, wait, func() bool { return connStates(t, addr)["agent"] == StateSuperseded }, "agent superseded")

	status := get(t, "http://"+addr+"/status")
	metrics := get(t, "http://"+addr+"/metrics")
	h.stop()

	log := logs.String()
	// The paths were driven: their log lines are there, with URLs redacted.
	for _, want := range []string{"401", "429", "503", "api_key=REDACTED", "nats reconnected", "superseded", "REDACTED@127.0.0.1"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q: the path was not driven or not logged", want)
		}
	}
	if !strings.Contains(status, "REDACTED@127.0.0.1") {
		t.Errorf("/status does not show the NATS URL redacted:\n%s", status)
	}
	noSecrets(t, "log", log)
	noSecrets(t, "/status", status)
	noSecrets(t, "/metrics", metrics)
	sysMu.Lock()
	noSecrets(t, "lifecycle events", strings.Join(sysEvents, "\n"))
	sysMu.Unlock()
	if t.Failed() || os.Getenv("BRIDGE_TEST_LOG") != "" {
		t.Logf("log:\n%s", log)
	}
}

// TestSecretsWrongNATSPassword: refused NATS credentials stop start-up with
// an error that names the problem and shows neither password.
func TestSecretsWrongNATSPassword(t *testing.T) {
	t.Parallel()
	ns := startAuthNATS(t)
	env := map[string]string{"NATS_PW": secretWrongPW, "BRIDGE_NATS_URL": ns.url(secretWrongPW)}
	var logs logBuffer
	_, err := runLogged(t, "[nats]\nuser = \"bridge\"\npassword_env = \"NATS_PW\"\n", env, &logs)
	if err == nil {
		t.Fatal("bridge started with a wrong NATS password")
	}
	if !strings.Contains(strings.ToLower(err.Error()), "authorization violation") {
		t.Errorf("error does not name the problem: %v", err)
	}
	noSecrets(t, "Run error", err.Error())
	noSecrets(t, "log", logs.String())
}

// TestSecretsSocketRefused: the key is right for REST but the socket refuses
// it (403; here the socket belongs to another emulator, whose key differs).
// The socket URL carries the key in its query: it must appear only redacted.
func TestSecretsSocketRefused(t *testing.T) {
	t.Parallel()
	emu := bandemu.New(bandemu.Options{APIKey: secretBandKey})
	emuURL, err := emu.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emu.Close)
	other := bandemu.New(bandemu.Options{})
	if _, err := other.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(other.Close)
	cfg := fmt.Sprintf("[nats.embedded]\nlisten = \"none\"\nstore_dir = %q\n[[connection]]\nname = \"wrongsocket\"\nplatform = \"band\"\n[connection.settings]\nbase_url = %q\nws_url = %q\nagent_id = %q\napi_key_env = \"BAND_KEY\"\n",
		t.TempDir(), emuURL, other.SocketURL(), emu.AgentID())
	var logs logBuffer
	h, err := runLogged(t, cfg, map[string]string{"BAND_KEY": secretBandKey}, &logs)
	if err != nil {
		t.Fatalf("bridge did not start: %v", err)
	}
	testutil.Eventually(t, 20*time.Second, func() bool {
		n := 0
		for _, r := range other.Requests() {
			if r.Path == bandemu.SocketPath && r.Status == 403 {
				n++
			}
		}
		return n >= 3 && logs.contains("403")
	}, "socket upgrades refused with 403, and logged")
	status := get(t, "http://"+h.info.HTTPAddr+"/status")
	// /metrics answers while the connection keeps being refused (Stats
	// never waits for Connect), and /status names the refusal.
	metrics, ok := getWithin(h.info.HTTPAddr, "/metrics", 2*time.Second)
	if !ok {
		t.Errorf("GET /metrics did not answer within 2s while the band connection is connecting")
	}
	testutil.Eventually(t, 20*time.Second, func() bool {
		return strings.Contains(get(t, "http://"+h.info.HTTPAddr+"/status"), "socket refused")
	}, "/status shows the refused socket")
	h.stop()
	log := logs.String()
	if !strings.Contains(log, "api_key=REDACTED") {
		t.Errorf("log does not show the socket URL redacted")
	}
	noSecrets(t, "log", log)
	noSecrets(t, "/status", status)
	noSecrets(t, "/metrics", metrics)
	if t.Failed() || os.Getenv("BRIDGE_TEST_LOG") != "" {
		t.Logf("log:\n%s", log)
	}
}

// getWithin GETs path with a deadline; ok is false when it did not answer.
func getWithin(addr, path string, d time.Duration) (body string, ok bool) {
	c := &http.Client{Timeout: d}
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		return "", false
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err == nil
}
