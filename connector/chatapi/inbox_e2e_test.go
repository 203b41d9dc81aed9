package chatapi_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/bridgeworks/bridge/connector/chatapi"
	"github.com/bridgeworks/bridge/emulator/chatapiemu"
	"github.com/bridgeworks/bridge/internal/testutil"
)

// TestBridgeInboxAcrossRestart runs inbox polling through the real bridge
// twice on one NATS store. The first run stores items but cannot mark
// them read (mark-read fails, as if the process died before it); the
// second run, with new items too, marks every item read without storing
// any twice; every mark-read names only items already stored.
func TestBridgeInboxAcrossRestart(t *testing.T) {
	t.Parallel()
	emu, agents := startEmu(t, 2, chatapiemu.Options{})
	ids := make([]string, 0, len(agents))
	for _, a := range agents {
		ids = append(ids, fmt.Sprintf("%q", a.ID))
		emu.FailRoute(http.MethodPost, "/api/agents/"+a.ID+"/mark-read", 1<<20, http.StatusServiceUnavailable, 0)
	}
	settings := fmt.Sprintf("inbox_agents = [%s]\npoll_interval = \"20ms\"\n", strings.Join(ids, ", "))
	dir := t.TempDir()
	add := func(n int, what string) {
		for i := range n {
			for _, a := range agents {
				if _, err := emu.AddInboxItem(a.ID, chatapiemu.InboxItem{Content: fmt.Sprintf("%s %d", what, i), Type: "reminder"}); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	inbox := func(c *collector) map[string]int {
		n := map[string]int{}
		for _, s := range c.all() {
			if s.name == chatapi.EventInbox {
				n[s.ev.ID]++
			}
		}
		return n
	}

	add(3, "before")
	first := startBridge(t, emu, dir, settings)
	c1 := collect(t, first.url)
	testutil.Eventually(t, 30*time.Second, func() bool { return len(inbox(c1)) == 6 }, "6 items on NATS")
	for _, a := range agents {
		for _, it := range emu.InboxItems(a.ID) {
			if it.Read() {
				t.Fatalf("item %s read although mark-read fails", it.ID)
			}
		}
	}
	first.stop()

	emu.ClearFaults()
	add(2, "after")
	second := startBridge(t, emu, dir, settings)
	c2 := collect(t, second.url)
	testutil.Eventually(t, 30*time.Second, func() bool {
		for _, a := range agents {
			for _, it := range emu.InboxItems(a.ID) {
				if !it.Read() {
					return false
				}
			}
		}
		return true
	}, "every item marked read by the second run")
	testutil.Eventually(t, 30*time.Second, func() bool { return len(inbox(c2)) == 10 }, "10 items on NATS")

	storedAt := map[string]time.Time{}
	for _, s := range c2.all() {
		if s.name == chatapi.EventInbox {
			storedAt[s.ev.Room+"/"+strings.TrimPrefix(s.ev.ID, chatapi.Platform+":"+e2eConn+":")] = s.at
		}
	}
	for id, n := range inbox(c2) {
		if n != 1 {
			t.Errorf("item %s stored %d times", id, n)
		}
	}
	for _, call := range emu.MarkReadCalls() {
		for _, id := range call.Marked {
			at, ok := storedAt[call.AgentID+"/"+id]
			switch {
			case !ok:
				t.Errorf("item %s marked read but never stored", id)
			case call.At.Before(at):
				t.Errorf("item %s marked read at %s, before it was stored at %s", id, call.At, at)
			}
		}
	}
	for _, a := range agents {
		for _, it := range emu.InboxItems(a.ID) {
			if it.ReadCount < 1 {
				t.Errorf("item %s never named by a mark-read", it.ID)
			}
		}
	}
}
