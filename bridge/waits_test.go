package bridge

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bridgeworks/bridge/emulator/bandemu"
	"github.com/bridgeworks/bridge/internal/testutil"
)

// hugeRetryAfter is "Retry-After: 1000000000" (about 31 years).
const hugeRetryAfter = 1_000_000_000 * time.Second

// connStatus reads the first connection's entry of /status.
// storedIn reports whether every id is stored in room.
func storedIn(t *testing.T, h *harness, room string, ids ...string) bool {
	perRoom, _ := storedMessages(t, h.js)
	have := map[string]bool{}
	for _, id := range perRoom[room] {
		have[id] = true
	}
	for _, id := range ids {
		if !have[id] {
			return false
		}
	}
	return true
}

// TestBandCatchUpRetryAfterCapped: a catch-up call answered 429 with
// Retry-After: 1000000000 waits retry_after_max, says so in a warn line
// and on /status, and holds only its own room: the other rooms' pushes
// flow, also while the room list itself is rate limited after a reconnect.
// Once the platform answers, the held room's messages arrive, in order,
// once.
func TestBandCatchUpRetryAfterCapped(t *testing.T) {
	t.Parallel()
	env := newBandEnv(t, bandemu.Options{})
	env.spec.config += "retry_after_max = \"1s\"\n"
	env.spec.logs = &logBuffer{}
	a := env.emu.AddRoom("held", env.user.ID)
	b := env.emu.AddRoom("free", env.user.ID)
	posted := map[string][]string{}
	post := func(r bandemu.Room, text string) string {
		id := env.emu.PostUserMessage(r.ID, env.user.ID, text).ID
		posted[r.ID] = append(posted[r.ID], id)
		return id
	}
	for i := range 3 {
		post(a, fmt.Sprintf("@Bridge Bot backlog %d", i))
	}
	route := "/api/v1/agent/chats/" + a.ID + "/messages"
	env.emu.FailRoute(http.MethodGet, route, 1000, http.StatusTooManyRequests, hugeRetryAfter)
	h := runBridge(t, env.spec)
	waitState(t, h, StateConnected)

	// The other room flows while the held room's catch-up waits.
	live := post(b, "@Bridge Bot live in the free room")
	testutil.Eventually(t, 20*time.Second, func() bool { return storedIn(t, h, b.ID, live) }, "free room's live message stored")
	var st ConnStatus
	testutil.Eventually(t, 10*time.Second, func() bool {
		st = connStatus(h.info.HTTPAddr)
		return st.WaitingUntil.After(time.Now().Add(-time.Second)) && strings.Contains(st.WaitingReason, "429") &&
			strings.Contains(st.WaitingReason, route)
	}, "/status shows the wait on %s", route)
	if st.WaitingUntil.After(time.Now().Add(2 * time.Second)) {
		t.Errorf("waiting_until %s is past retry_after_max (1s)", st.WaitingUntil)
	}
	if !strings.Contains(st.LastError, "429") {
		t.Errorf("last_error %q does not name the 429", st.LastError)
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		return strings.Contains(grep(env.spec.logs.String(), "retry_after_max"), `"level":"warn"`)
	}, "a warn line about the capped wait")
	if line := grep(env.spec.logs.String(), "retry_after_max"); !strings.Contains(line, `"asked_wait_ms"`) || !strings.Contains(line, route) {
		t.Errorf("warn line lacks the asked wait or the route: %s", line)
	}
	post(a, "@Bridge Bot live in the held room")
	env.emu.ClearRouteFaults()
	testutil.Eventually(t, 30*time.Second, func() bool { return storedIn(t, h, a.ID, posted[a.ID]...) }, "held room caught up")

	// After a reconnect the room list is rate limited: the rooms already
	// known still catch up and let their pushes through.
	env.emu.FailRoute(http.MethodGet, "/api/v1/agent/chats", 1000, http.StatusTooManyRequests, hugeRetryAfter)
	env.emu.DropSockets()
	for i := range 3 {
		id := post(b, fmt.Sprintf("@Bridge Bot while the list waits %d", i))
		testutil.Eventually(t, 20*time.Second, func() bool { return storedIn(t, h, b.ID, id) }, "message %d stored while the room list is rate limited", i)
	}
	env.emu.ClearRouteFaults()
	checkExactlyOnceInOrder(t, h.js, posted)
}

// TestBandCommandRetryAfterCapped: a command answered 429 with
// Retry-After: 1000000000 is retried after at most command_backoff_max,
// with a warn line, instead of stalling its room.
func TestBandCommandRetryAfterCapped(t *testing.T) {
	t.Parallel()
	env := newBandEnv(t, bandemu.Options{})
	env.spec.config += "command_backoff_max = \"1s\"\n"
	env.spec.logs = &logBuffer{}
	room := env.emu.AddRoom("cmds", env.user.ID)
	h := runBridge(t, env.spec)
	waitState(t, h, StateConnected)
	result := results(t, h)
	env.emu.FailRoute(http.MethodPost, "/api/v1/agent/chats/"+room.ID+"/messages", 1, http.StatusTooManyRequests, hugeRetryAfter)
	start := time.Now()
	publishCmd(t, h, room.ID, "send_message", "rl-1", map[string]any{"content": "hi", "mentions": []map[string]any{{"id": env.user.ID}}})
	r := result("rl-1")
	if !r.OK || r.Attempts != 2 {
		t.Fatalf("result %+v, want ok after 2 attempts", r)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("retried after %s, want about command_backoff_max (1s)", took)
	}
	if line := grep(env.spec.logs.String(), "asked_wait_ms"); !strings.Contains(line, `"level":"warn"`) || !strings.Contains(line, "send_message") {
		t.Errorf("no warn line naming the command and the asked wait: %q", line)
	}
}

// TestBandUpgradeRetryAfterCapped: upgrades refused with 429 and a huge
// retry_after are retried after retry_after_max, and /status shows the
// wait and the refusal as last_error meanwhile.
func TestBandUpgradeRetryAfterCapped(t *testing.T) {
	t.Parallel()
	env := newBandEnv(t, bandemu.Options{})
	env.spec.config += "retry_after_max = \"1s\"\n"
	env.spec.logs = &logBuffer{}
	env.emu.RejectUpgrades(3, http.StatusTooManyRequests, hugeRetryAfter)
	h := runBridge(t, env.spec)
	var st ConnStatus
	testutil.Eventually(t, 10*time.Second, func() bool {
		st = connStatus(h.info.HTTPAddr)
		return strings.Contains(st.WaitingReason, "socket upgrade") && strings.Contains(st.LastError, "429")
	}, "/status shows the upgrade wait and last_error")
	waitState(t, h, StateConnected)
	var upgrades []bandemu.RequestRecord
	for _, r := range env.emu.Requests() {
		if r.Path == "/api/v1/socket/websocket" {
			upgrades = append(upgrades, r)
		}
	}
	if len(upgrades) != 4 || upgrades[3].Status != http.StatusSwitchingProtocols {
		t.Fatalf("upgrades: %+v", upgrades)
	}
	for i := 1; i < len(upgrades); i++ {
		if gap := upgrades[i].Time.Sub(upgrades[i-1].Time); gap < 900*time.Millisecond || gap > 5*time.Second {
			t.Errorf("upgrade %d came %s after the refusal, want about retry_after_max (1s)", i, gap)
		}
	}
	if !strings.Contains(grep(env.spec.logs.String(), "asked_wait_ms"), `"level":"warn"`) {
		t.Error("no warn line for the capped upgrade wait")
	}
}

// otherHost is a second server that records every request it gets.
type otherHost struct {
	*httptest.Server
	mu   sync.Mutex
	seen []string // "METHOD URI x-api-key=<header>"
}

func newOtherHost(t *testing.T) *otherHost {
	o := &otherHost{}
	o.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.mu.Lock()
		o.seen = append(o.seen, r.Method+" "+r.URL.RequestURI()+" x-api-key="+r.Header.Get("X-API-Key"))
		o.mu.Unlock()
		http.Error(w, "not here", http.StatusNotFound)
	}))
	t.Cleanup(o.Close)
	return o
}

func (o *otherHost) requests() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.seen...)
}

// TestBandRedirectNeverLeaksKey: a 307 from the platform to another host,
// on REST and on the socket upgrade, is refused: the other host never gets
// a request, so never the key (X-API-Key header, api_key query). The
// refusal names the target on /status; the connection comes up once the
// platform stops redirecting.
func TestBandRedirectNeverLeaksKey(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name          string
		rest, upgrade int
	}{{"rest", 2, 0}, {"upgrade", 0, 2}} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			env := newBandEnv(t, bandemu.Options{})
			other := newOtherHost(t)
			env.emu.RedirectREST(c.rest, other.URL)
			env.emu.RedirectUpgrades(c.upgrade, other.URL)
			h := runBridge(t, env.spec)
			testutil.Eventually(t, 20*time.Second, func() bool {
				return len(other.requests()) > 0 || statusOf(t, h.info.HTTPAddr) == StateConnected
			}, "connected")
			if got := other.requests(); len(got) != 0 {
				t.Fatalf("the other host got %d requests (the API key followed the redirect): %q", len(got), got)
			}
			var redirects int
			for _, r := range env.emu.Requests() {
				if r.Status == http.StatusTemporaryRedirect {
					redirects++
				}
			}
			if redirects != c.rest+c.upgrade {
				t.Errorf("%d redirects answered, want %d", redirects, c.rest+c.upgrade)
			}
			if st := connStatus(h.info.HTTPAddr); !strings.Contains(st.LastError, "redirect to another origin ("+other.URL+") refused") {
				t.Errorf("last_error %q does not name the refused redirect", st.LastError)
			}
		})
	}
}
