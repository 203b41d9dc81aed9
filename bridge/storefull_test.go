package bridge

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bridgeworks/bridge/config"
	"github.com/bridgeworks/bridge/emulator/bandemu"
	"github.com/bridgeworks/bridge/internal/testutil"
)

// readyz returns /readyz's status code and body.
func readyz(t *testing.T, addr string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// The embedded store reaches nats.embedded.max_store: /readyz says so with
// the reason, /status too; once space is freed the connection runs again
// with nothing lost, without a restart.
func TestStoreFullReadinessAndRecovery(t *testing.T) {
	t.Parallel()
	env := newBandEnv(t, bandemu.Options{})
	room := env.emu.AddRoom("ops", env.user.ID)
	spec := env.spec
	spec.config = "[lease]\nttl = \"1s\"\n" + spec.config
	spec.tweak = func(c *config.Config) { c.NATS.Embedded.MaxStore = 4 << 20 }
	h := runBridge(t, spec)
	waitState(t, h, StateConnected)
	testutil.Eventually(t, 10*time.Second, func() bool { c, _ := readyz(t, h.info.HTTPAddr); return c == http.StatusOK }, "ready")
	before := env.emu.PostUserMessage(room.ID, env.user.ID, "@Bridge Bot before")
	testutil.Eventually(t, 20*time.Second, func() bool { _, n := storedMessages(t, h.js); return n[before.ID] == 1 }, "first message stored")

	// Something else fills the store up to max_store.
	ctx := testutil.Context(t, 60*time.Second)
	filler := make([]byte, 64<<10)
	for i := 0; ; i++ {
		if _, err := h.js.Publish(ctx, "bridge.evt.band.agent.filler.filler", filler); err != nil {
			t.Logf("store full after %d fillers: %v", i, err)
			break
		}
		if i > 1000 {
			t.Fatal("max_store not enforced")
		}
	}
	during := env.emu.PostUserMessage(room.ID, env.user.ID, "@Bridge Bot while full")
	var body string
	testutil.Eventually(t, 20*time.Second, func() bool {
		var code int
		code, body = readyz(t, h.info.HTTPAddr)
		return code == http.StatusServiceUnavailable
	}, "/readyz 503 while the store is full")
	if !strings.Contains(body, "connection agent") {
		t.Errorf("/readyz body does not name the connection: %q", body)
	}
	t.Logf("/readyz: %s", strings.TrimSpace(body))
	if st := get(t, "http://"+h.info.HTTPAddr+"/status"); !strings.Contains(st, `"ready": false`) || !strings.Contains(st, "nats_errors") {
		t.Errorf("/status does not say why it is not ready:\n%s", st)
	}

	// Space returns: the bridge takes it up again by itself.
	st, err := h.js.Stream(ctx, "BRIDGE_EVENTS")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Purge(ctx, jetstream.WithPurgeSubject("bridge.evt.band.agent.filler.>")); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, func() bool { c, _ := readyz(t, h.info.HTTPAddr); return c == http.StatusOK }, "/readyz 200 once space is back")
	waitState(t, h, StateConnected)
	after := env.emu.PostUserMessage(room.ID, env.user.ID, "@Bridge Bot after")
	testutil.Eventually(t, 30*time.Second, func() bool {
		_, n := storedMessages(t, h.js)
		return n[during.ID] == 1 && n[after.ID] == 1
	}, "messages posted during and after stored once")
	if _, n := storedMessages(t, h.js); n[before.ID] != 1 {
		t.Errorf("the first message is stored %d times", n[before.ID])
	}
}
