package bridge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/bridgeworks/bridge/config"
	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/emulator/bandemu"
	"github.com/bridgeworks/bridge/internal/testutil"
)

// fakes is a platform whose connectors are scripted, recorded per
// connection in the order they were built.
type fakes struct {
	mu    sync.Mutex
	built map[string][]*scripted
}

func (f *fakes) registry() connector.Registry {
	return connector.Registry{"fake": {Platform: "fake", Secrets: []string{"api_key"},
		New: func(cfg connector.Config, _ connector.Deps) (connector.Connector, error) {
			sc := newScripted()
			f.mu.Lock()
			f.built[cfg.Name] = append(f.built[cfg.Name], sc)
			f.mu.Unlock()
			return sc, nil
		}}}
}

func (f *fakes) of(name string) []*scripted {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.built[name])
}

func fakeConns(names ...string) string {
	var b strings.Builder
	for _, n := range names {
		b.WriteString("[[connection]]\nname = \"" + n + "\"\nplatform = \"fake\"\n")
	}
	return b.String()
}

// reloadConfig parses text the way the harness did its config: same NATS
// and HTTP sections, same test-sized reconnect waits.
func reloadConfig(t *testing.T, h *harness, text string) *config.Config {
	t.Helper()
	c, err := config.Parse([]byte(text), nil)
	if err != nil {
		t.Fatal(err)
	}
	c.NATS, c.HTTP = h.cfg.NATS, h.cfg.HTTP
	for i := range c.Connection {
		c.Connection[i].ReconnectInitial = config.Duration(time.Millisecond)
		c.Connection[i].ReconnectMax = config.Duration(10 * time.Millisecond)
	}
	return c
}

// commandSubjectsOf lists what the commands stream captures now.
func commandSubjectsOf(t *testing.T, h *harness) []string {
	t.Helper()
	st, err := h.js.Stream(testutil.Context(t, 10*time.Second), "BRIDGE_COMMANDS")
	if err != nil {
		t.Fatal(err)
	}
	return st.CachedInfo().Config.Subjects
}

// Reload starts an added connection, stops a removed one, restarts a
// changed one and leaves the others alone; a config with mistakes is
// refused, every mistake named, and the running one kept.
func TestReloadConnections(t *testing.T) {
	t.Parallel()
	f := &fakes{built: map[string][]*scripted{}}
	h := runBridge(t, bridgeSpec{config: fakeConns("keep", "gone", "change"), registry: f.registry()})
	addr := h.info.HTTPAddr
	testutil.Eventually(t, 10*time.Second, func() bool {
		st := connStates(t, addr)
		return st["keep"] == StateConnected && st["gone"] == StateConnected && st["change"] == StateConnected
	}, "three connections connected")
	keep := f.of("keep")[0]
	ctx := testutil.Context(t, 30*time.Second)

	// A change to a section read only at start is kept out, and touches
	// no connection.
	c := reloadConfig(t, h, fakeConns("keep", "gone", "change"))
	c.Lease.TTL = config.Duration(time.Minute)
	if err := h.b.Reload(ctx, c); err != nil {
		t.Fatalf("reload with a lease change: %v", err)
	}

	c = reloadConfig(t, h, fakeConns("keep", "change", "added")+"[[dispatch]]\nconnection = \"change\"\n")
	c.Connection[1].MaxParallelRooms = 4
	if err := h.b.Reload(ctx, c); err != nil {
		t.Fatalf("reload: %v", err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		st := connStates(t, addr)
		_, gone := st["gone"]
		return !gone && st["keep"] == StateConnected && st["change"] == StateConnected && st["added"] == StateConnected
	}, "gone removed, change restarted, added connected")

	if n := len(f.of("keep")); n != 1 {
		t.Errorf("keep was built %d times, want once (untouched)", n)
	}
	if connects, _ := keep.counts(); connects != 1 || keep.closes != 0 {
		t.Errorf("keep: %d connects, %d closes; want 1 and 0 (untouched)", connects, keep.closes)
	}
	if gone := f.of("gone"); len(gone) != 1 || gone[0].closes == 0 {
		t.Errorf("gone was not closed")
	}
	if ch := f.of("change"); len(ch) != 2 || ch[0].closes == 0 {
		t.Errorf("change: built %d times, first closed: %v; want a restart", len(ch), len(ch) > 0 && ch[0].closes > 0)
	}
	subs := strings.Join(commandSubjectsOf(t, h), " ")
	if !strings.Contains(subs, "bridge.cmd.fake.added.>") || strings.Contains(subs, ".gone.") {
		t.Errorf("commands stream captures %s: want added's commands and not gone's", subs)
	}
	if m := get(t, "http://"+addr+"/metrics"); strings.Contains(m, `connection="gone"`) {
		t.Errorf("metrics still carry the removed connection:\n%s", grep(m, `connection="gone"`))
	}

	// Mistakes: an unknown platform, a missing secret, a broken duration.
	bad := reloadConfig(t, h, fakeConns("keep")+
		"[[connection]]\nname = \"nope\"\nplatform = \"nosuch\"\n"+
		"[[connection]]\nname = \"nokey\"\nplatform = \"fake\"\n[connection.settings]\napi_key_env = \"UNSET_KEY\"\n")
	bad.Connection[0].RetryAfterMax = 0
	err := h.b.Reload(ctx, bad)
	if err == nil {
		t.Fatal("a config with mistakes was applied")
	}
	for _, want := range []string{`connection "keep": retry_after_max`, `connection "nope": platform "nosuch"`, `connection "nokey": settings.api_key_env`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("reload error lacks %q:\n%v", want, err)
		}
	}
	if errors.Is(err, ErrReloadIncomplete) {
		t.Errorf("a refused reload is marked incomplete (as if applied)")
	}
	st := connStates(t, addr)
	if len(st) != 3 || st["change"] != StateConnected || st["added"] != StateConnected {
		t.Errorf("after a refused reload: %v, want keep, change and added still running", st)
	}
	if n := len(f.of("keep")) + len(f.of("change")) + len(f.of("added")); n != 4 {
		t.Errorf("a refused reload built connectors (%d builds, want 4)", n)
	}

	// Reload waits for Run: a bridge that is not running does not take it.
	stopped := testutil.Context(t, time.Second)
	h.stop()
	if err := h.b.Reload(stopped, reloadConfig(t, h, fakeConns("keep"))); err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("reload of a stopped bridge: %v", err)
	}
}

// A Band connection with a command executor and a dispatch rule restarts
// on a reload that changes the rule (its metrics register afresh), and a
// reload that removes it takes its series off /metrics.
func TestReloadBandConnectionWithDispatch(t *testing.T) {
	t.Parallel()
	env := newBandEnv(t, bandemu.Options{})
	env.spec.config += "[[dispatch]]\nconnection = \"agent\"\n"
	h := runBridge(t, env.spec)
	waitState(t, h, StateConnected)
	ctx := testutil.Context(t, 30*time.Second)
	before := connStatus(h.info.HTTPAddr).Since
	changed := reloadConfig(t, h, env.spec.config)
	changed.Dispatch[0].Timeout = config.Duration(time.Minute)
	if err := h.b.Reload(ctx, changed); err != nil {
		t.Fatalf("reload with a changed dispatch rule: %v", err)
	}
	testutil.Eventually(t, 20*time.Second, func() bool {
		st := connStatus(h.info.HTTPAddr)
		return st.State == StateConnected && st.Since.After(before)
	}, "agent restarted and connected")
	if m := get(t, "http://"+h.info.HTTPAddr+"/metrics"); !strings.Contains(m, `bridge_commands_in_flight{connection="agent"`) {
		t.Errorf("the restarted executor's metrics are not served")
	}

	if err := h.b.Reload(ctx, reloadConfig(t, h, "")); err != nil {
		t.Fatalf("reload removing the connection: %v", err)
	}
	testutil.Eventually(t, 20*time.Second, func() bool { return len(connStates(t, h.info.HTTPAddr)) == 0 }, "agent removed")
	if m := get(t, "http://"+h.info.HTTPAddr+"/metrics"); strings.Contains(m, `connection="agent"`) {
		t.Errorf("series of the removed connection remain:\n%s", grep(m, `connection="agent"`))
	}
}

// TestConnLogHook: a connection's logger names the connection and its
// platform on every line, its own sub-loggers' included.
func TestConnLogHook(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := zerolog.New(&buf).Hook(&connLogHook{name: "c1", platform: "band"})
	log.Info().Str("k", "v").Msg("one")
	sub := log.With().Str("component", "x").Logger()
	sub.Warn().Msg("two")
	log.Debug().Msg("three")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("got %d lines, want 3:\n%s", len(lines), buf.String())
	}
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("%s: %v", l, err)
		}
		if m["connection"] != "c1" || m["platform"] != "band" {
			t.Errorf("line %s does not name connection c1 on band", l)
		}
	}
}
