package agentconnect_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bridgeworks/bridge/emulator/agentconnectemu"
	"github.com/bridgeworks/bridge/internal/testutil"
	"github.com/bridgeworks/bridge/subjects"
)

// reply is what a send_message result carries: the AI's answer frame.
func replyContent(t *testing.T, r subjects.Result) string {
	t.Helper()
	var f struct{ Type, Content string }
	if !r.OK || json.Unmarshal(r.Data, &f) != nil || f.Type != "text" {
		t.Fatalf("send_message %s: %+v (error %+v)", r.CommandID, r, r.Error)
	}
	return f.Content
}

// TestBridgeConversations20Sessions runs 20 sessions through the real
// bridge: each gets three messages as durable commands, every result
// carries the AI's answer, and every answer is also a text event of its
// room, in order.
func TestBridgeConversations20Sessions(t *testing.T) {
	t.Parallel()
	emu, _ := fastEmu(t, agentconnectemu.Options{})
	natsURL, _ := runBridge(t, emu, t.TempDir())
	w := newWorker(t, natsURL)
	var rooms []string
	for range 20 {
		rooms = append(rooms, w.createSession())
	}
	for _, r := range rooms {
		testutil.Eventually(t, 20*time.Second, func() bool { return emu.Sockets(r) == 1 }, "socket of %s", r)
	}
	for i := range 3 {
		for _, r := range rooms {
			w.command(r, "send_message", fmt.Sprintf("%s-%d", r, i), map[string]string{"content": fmt.Sprintf("hello %d", i)})
		}
	}
	for _, r := range rooms {
		var want []string
		for i := range 3 {
			res, _ := w.result(fmt.Sprintf("%s-%d", r, i), 60*time.Second)
			if got := replyContent(t, res); got != fmt.Sprintf("Echo: hello %d", i) {
				t.Errorf("%s message %d: answer %q", r, i, got)
			}
			want = append(want, fmt.Sprintf("Echo: hello %d", i))
		}
		testutil.Eventually(t, 20*time.Second, func() bool { return len(w.texts(r)) >= 3 }, "text events of %s", r)
		if got := w.texts(r); !slices.Equal(got, want) {
			t.Errorf("%s: text events %q, want %q", r, got, want)
		}
		if n := emu.Sockets(r); n != 1 {
			t.Errorf("%s has %d sockets, want exactly one", r, n)
		}
	}
}

// TestBridgeCooldownHoldsRoom: a cooldown answers the pending
// send_message with ok:false, code cooldown, retryable, with the seconds
// left; the room's next command waits that long, another room does not.
func TestBridgeCooldownHoldsRoom(t *testing.T) {
	t.Parallel()
	emu, _ := fastEmu(t, agentconnectemu.Options{})
	natsURL, _ := runBridge(t, emu, t.TempDir())
	w := newWorker(t, natsURL)
	held, other := w.createSession(), w.createSession()
	for _, r := range []string{held, other} {
		testutil.Eventually(t, 20*time.Second, func() bool { return emu.Sockets(r) == 1 }, "socket of %s", r)
	}
	const cooldown = 2 * time.Second
	emu.ForceCooldown(held, cooldown)
	w.command(held, "send_message", "c1", map[string]string{"content": "first"})
	w.command(held, "send_message", "c2", map[string]string{"content": "second"})
	w.command(other, "send_message", "o1", map[string]string{"content": "elsewhere"})

	r1, at1 := w.result("c1", 30*time.Second)
	if r1.OK || r1.Error == nil || r1.Error.Code != "cooldown" || !r1.Error.Retryable {
		t.Fatalf("first message: %+v (error %+v), want ok:false, code cooldown, retryable", r1, r1.Error)
	}
	if ms := r1.Error.RetryAfterMs; ms < 1500 || ms > 2000 {
		t.Errorf("retry_after_ms = %d, want the seconds left of a 2s cooldown", ms)
	}
	if !strings.Contains(r1.Error.Message, "cooldown") {
		t.Errorf("message %q does not say cooldown", r1.Error.Message)
	}
	ro, ato := w.result("o1", 30*time.Second)
	replyContent(t, ro)
	r2, _ := w.result("c2", 30*time.Second)
	if got := replyContent(t, r2); got != "Echo: second" {
		t.Errorf("second message answered %q", got)
	}
	hold := time.Duration(r1.Error.RetryAfterMs) * time.Millisecond
	if ato.After(at1.Add(hold)) {
		t.Errorf("the other room waited for the held room's cooldown")
	}
	// The held command went out only once the cooldown was over (the
	// clients' frames carry the connector's send time).
	var sentAt []time.Time
	for _, f := range emu.Received(held) {
		if f.Type == "text" {
			ts, _ := time.Parse(time.RFC3339Nano, f.Timestamp)
			sentAt = append(sentAt, ts)
		}
	}
	if len(sentAt) != 2 || sentAt[1].Sub(sentAt[0]) < hold-50*time.Millisecond {
		t.Errorf("the platform got %d messages, sent at %v; want the second %s after the first", len(sentAt), sentAt, hold)
	}
}

// TestBridgeCooldownShorterThanServerWait: the server's handler, after a
// cooldown, waits its reply timeout, sends the "taking longer" notice and
// only then reads the next frame. With a cooldown shorter than that wait
// the held message goes out before the notice; the notice belongs to the
// cooldown, so the held message still gets the AI's answer.
func TestBridgeCooldownShorterThanServerWait(t *testing.T) {
	t.Parallel()
	const cooldown, serverWait = 300 * time.Millisecond, 1500 * time.Millisecond
	emu, _ := fastEmu(t, agentconnectemu.Options{ReplyTimeout: serverWait})
	natsURL, _ := runBridge(t, emu, t.TempDir())
	w := newWorker(t, natsURL)
	held := w.createSession()
	testutil.Eventually(t, 20*time.Second, func() bool { return emu.Sockets(held) == 1 }, "socket of %s", held)
	emu.ForceCooldown(held, cooldown)
	w.command(held, "send_message", "c1", map[string]string{"content": "first"})
	w.command(held, "send_message", "c2", map[string]string{"content": "second"})
	w.command(held, "send_message", "c3", map[string]string{"content": "third"})

	r1, _ := w.result("c1", 30*time.Second)
	if r1.OK || r1.Error == nil || r1.Error.Code != "cooldown" {
		t.Fatalf("first message: %+v (error %+v), want code cooldown", r1, r1.Error)
	}
	r2, _ := w.result("c2", 30*time.Second)
	if got := replyContent(t, r2); got != "Echo: second" {
		t.Errorf("second message answered %q", got)
	}
	// The scenario: the held message went out before the notice.
	var sent, notice time.Time
	for _, f := range emu.Received(held) {
		if f.Type == "text" && f.Content == "second" {
			sent, _ = time.Parse(time.RFC3339Nano, f.Timestamp)
		}
	}
	for _, f := range emu.Broadcasts(held) {
		if f.Type == "system" && f.Content == agentconnectemu.NoticeSlowAI {
			notice, _ = time.Parse(time.RFC3339Nano, f.Timestamp)
		}
	}
	if sent.IsZero() || notice.IsZero() || !sent.Before(notice) {
		t.Errorf("second message sent at %v, notice at %v: want the message first", sent, notice)
	}
	r3, _ := w.result("c3", 30*time.Second)
	if got := replyContent(t, r3); got != "Echo: third" {
		t.Errorf("third message answered %q", got)
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		return w.lifecycles(subjects.LifecycleReplyTimeout, held) == 1
	}, "the notice published as reply_timeout")
}
