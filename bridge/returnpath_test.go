package bridge

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bridgeworks/bridge/emulator/bandemu"
	"github.com/bridgeworks/bridge/internal/testutil"
	"github.com/bridgeworks/bridge/subjects"
)

// publishCmd publishes a durable command with JetStream and an id of ours.
func publishCmd(t *testing.T, h *harness, room, command, id string, args any) {
	t.Helper()
	b, _ := json.Marshal(args)
	m := nats.NewMsg(subjects.Subject{Prefix: "bridge", Kind: subjects.KindCommand, Platform: "band", Conn: "agent", Room: room, Name: command}.String())
	m.Data = b
	if id != "" {
		m.Header.Set(subjects.HeaderMsgID, id)
	}
	if _, err := h.js.PublishMsg(testutil.Context(t, 10*time.Second), m); err != nil {
		t.Fatal(err)
	}
}

// results subscribes to every command result of the connection.
func results(t *testing.T, h *harness) func(id string) subjects.Result {
	t.Helper()
	var mu sync.Mutex
	got := map[string]subjects.Result{}
	sub, err := h.info.Conn.Subscribe("bridge.res.band.agent.>", func(m *nats.Msg) {
		var r subjects.Result
		if json.Unmarshal(m.Data, &r) == nil {
			mu.Lock()
			got[r.CommandID] = r
			mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return func(id string) subjects.Result {
		t.Helper()
		var r subjects.Result
		testutil.Eventually(t, 20*time.Second, func() bool {
			mu.Lock()
			defer mu.Unlock()
			var ok bool
			r, ok = got[id]
			return ok
		}, "result of %s", id)
		return r
	}
}

// client connects to the bridge's NATS as a worker would: the bridge's own
// connection gets no RPC replies (its inboxes are never a reply destination).
func client(t *testing.T, h *harness) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(h.info.NATSClientURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func rpc(t *testing.T, h *harness, command string, args map[string]any) subjects.Result {
	t.Helper()
	b, _ := json.Marshal(args)
	msg, err := client(t, h).Request("bridge.rpc.band.agent."+command, b, 10*time.Second)
	if err != nil {
		t.Fatalf("rpc %s: %v", command, err)
	}
	var r subjects.Result
	if err := json.Unmarshal(msg.Data, &r); err != nil {
		t.Fatalf("rpc %s: %q: %v", command, msg.Data, err)
	}
	return r
}

func TestBandCommandsRoundTrip(t *testing.T) {
	t.Parallel()
	env := newBandEnv(t, bandemu.Options{})
	room := env.emu.AddRoom("ops", env.user.ID)
	peer := env.emu.AddUser("Sam Peer")
	h := runBridge(t, env.spec)
	waitState(t, h, StateConnected)
	res := results(t, h)
	msg := env.emu.PostUserMessage(room.ID, env.user.ID, "@Bridge Bot hi")

	cmds := []struct {
		command string
		args    map[string]any
	}{
		{"mark_processing", map[string]any{"message_id": msg.ID}},
		{"send_message", map[string]any{"content": "hello Dana", "mentions": []map[string]any{{"id": env.user.ID}}}},
		{"post_event", map[string]any{"content": "thinking", "message_type": "thought"}},
		{"set_activity", map[string]any{"working": true}},
		{"add_participant", map[string]any{"participant_id": peer.ID}},
		{"remove_participant", map[string]any{"participant_id": peer.ID}},
		{"update_chat", map[string]any{"title": "ops (renamed)"}},
		{"mark_processed", map[string]any{"message_id": msg.ID}},
	}
	for i, c := range cmds {
		publishCmd(t, h, room.ID, c.command, fmt.Sprintf("rt-%d", i), c.args)
	}
	for i, c := range cmds {
		r := res(fmt.Sprintf("rt-%d", i))
		if !r.OK || r.Command != c.command {
			t.Errorf("%s: %+v", c.command, r)
		}
	}
	publishCmd(t, h, "", "create_chat", "rt-create", map[string]any{"title": "new room"})
	if r := res("rt-create"); !r.OK || r.Status != 201 {
		t.Errorf("create_chat: %+v", r)
	}
	if got := env.emu.AgentMessages(room.ID); len(got) != 1 || !strings.Contains(got[0].Content, "hello Dana") {
		t.Errorf("agent messages: %+v", got)
	}
	if st, _ := env.emu.Status(msg.ID); st != bandemu.StatusProcessed {
		t.Errorf("message status %q, want processed", st)
	}
	// A failed message keeps its error.
	m2 := env.emu.PostUserMessage(room.ID, env.user.ID, "@Bridge Bot again")
	publishCmd(t, h, room.ID, "mark_processing", "rt-p2", map[string]any{"message_id": m2.ID})
	publishCmd(t, h, room.ID, "mark_failed", "rt-f2", map[string]any{"message_id": m2.ID, "error": "model down"})
	if r := res("rt-f2"); !r.OK {
		t.Errorf("mark_failed: %+v", r)
	}
	if st, att := env.emu.Status(m2.ID); st != bandemu.StatusFailed || len(att) != 1 || att[0].Error != "model down" {
		t.Errorf("status %q attempts %+v", st, att)
	}
	// Reads over RPC.
	for _, c := range []struct {
		command string
		args    map[string]any
	}{
		{"me", nil}, {"peers", nil}, {"list_chats", map[string]any{"page_size": 5}},
		{"get_chat", map[string]any{"room": room.ID}}, {"list_messages", map[string]any{"room": room.ID, "limit": 10}},
		{"context", map[string]any{"room": room.ID}}, {"list_participants", map[string]any{"room": room.ID}},
		{"contacts", nil}, {"contact_requests", nil},
	} {
		if r := rpc(t, h, c.command, c.args); !r.OK {
			t.Errorf("rpc %s: %+v", c.command, r)
		}
	}
	if r := rpc(t, h, "me", nil); !strings.Contains(string(r.Data), env.emu.AgentID()) {
		t.Errorf("me: %s", r.Data)
	}
}

func TestBandCommandErrorsAndGarbage(t *testing.T) {
	t.Parallel()
	env := newBandEnv(t, bandemu.Options{})
	room := env.emu.AddRoom("ops", env.user.ID)
	h := runBridge(t, env.spec)
	waitState(t, h, StateConnected)
	res := results(t, h)
	dlq, err := h.info.Conn.SubscribeSync("bridge.dlq.>")
	if err != nil {
		t.Fatal(err)
	}
	// Platform 422 becomes the error code; no retry.
	publishCmd(t, h, room.ID, "send_message", "bad-mention", map[string]any{"content": "hi", "mentions": []map[string]any{{"id": "not-in-room"}}})
	if r := res("bad-mention"); r.OK || r.Error == nil || r.Error.Code != "mentioned_participant_not_in_room" || r.Attempts != 1 {
		t.Errorf("422: %+v %+v", r, r.Error)
	}
	// Bad input names the field.
	publishCmd(t, h, room.ID, "send_message", "no-mentions", map[string]any{"content": "hi"})
	if r := res("no-mentions"); r.OK || r.Error.Code != subjects.ErrCodeBadRequest || !strings.Contains(r.Error.Message, "mentions") {
		t.Errorf("bad request: %+v", r.Error)
	}
	publishCmd(t, h, room.ID, "teleport", "unknown", map[string]any{})
	if r := res("unknown"); r.OK || r.Error.Code != subjects.ErrCodeBadRequest {
		t.Errorf("unknown command: %+v", r.Error)
	}
	// Not JSON at all.
	m := nats.NewMsg("bridge.cmd.band.agent." + room.ID + ".send_message")
	m.Data = []byte("{{{ not json")
	m.Header.Set(subjects.HeaderMsgID, "garbage")
	if _, err := h.js.PublishMsg(testutil.Context(t, 5*time.Second), m); err != nil {
		t.Fatal(err)
	}
	if r := res("garbage"); r.OK || r.Error.Code != subjects.ErrCodeBadRequest {
		t.Errorf("garbage: %+v", r.Error)
	}
	// Garbage on the RPC subject is answered, not fatal.
	reply, err := client(t, h).Request("bridge.rpc.band.agent.me", []byte("]]"), 5*time.Second)
	if err != nil || !strings.Contains(string(reply.Data), subjects.ErrCodeBadRequest) {
		t.Fatalf("rpc garbage: %v %v", err, reply)
	}
	// Dead letters carry provenance: one per refused command.
	for range 4 {
		d, err := dlq.NextMsgWithContext(testutil.Context(t, 10*time.Second))
		if err != nil {
			t.Fatalf("dead letter missing: %v", err)
		}
		src := d.Header.Get(subjects.HeaderSourceSubject)
		if d.Header.Get(subjects.HeaderError) == "" || !strings.HasPrefix(src, "bridge.cmd.band.agent.") || d.Header.Get(subjects.HeaderAttempts) == "" {
			t.Errorf("dead letter without provenance: %v", d.Header)
		}
	}
	// And the executor still works after all that.
	publishCmd(t, h, room.ID, "post_event", "after", map[string]any{"content": "still here", "message_type": "thought"})
	if r := res("after"); !r.OK {
		t.Errorf("after garbage: %+v", r)
	}
}

func TestBandCommandOrderAndStorms(t *testing.T) {
	t.Parallel()
	env := newBandEnv(t, bandemu.Options{})
	var rooms []bandemu.Room
	for i := range 20 {
		rooms = append(rooms, env.emu.AddRoom(fmt.Sprintf("r%d", i), env.user.ID))
	}
	h := runBridge(t, env.spec)
	waitState(t, h, StateConnected)
	res := results(t, h)
	env.emu.FailREST(5, 429, 300*time.Millisecond)
	for i := range 50 {
		for _, r := range rooms {
			publishCmd(t, h, r.ID, "send_message", fmt.Sprintf("%s-%d", r.ID, i), map[string]any{
				"content": fmt.Sprintf("reply %d", i), "mentions": []map[string]any{{"id": env.user.ID}}})
		}
		if i == 25 {
			env.emu.FailREST(5, 503, 200*time.Millisecond)
		}
	}
	for _, r := range rooms {
		res(fmt.Sprintf("%s-%d", r.ID, 49))
	}
	for _, r := range rooms {
		got := env.emu.AgentMessages(r.ID)
		if len(got) != 50 {
			t.Fatalf("room %s: %d messages, want 50", r.ID, len(got))
		}
		for i, m := range got {
			if !strings.HasSuffix(m.Content, fmt.Sprintf("reply %d", i)) {
				t.Fatalf("room %s: message %d is %q (order broken)", r.ID, i, m.Content)
			}
		}
	}
	// No retry of a refused call came before its Retry-After: the next call
	// on the same path (the same room) waited at least that long.
	reqs := env.emu.Requests()
	refused := 0
	for i, r := range reqs {
		if r.Status != 429 && r.Status != 503 {
			continue
		}
		refused++
		wait := 300 * time.Millisecond
		if r.Status == 503 {
			wait = 200 * time.Millisecond
		}
		for _, next := range reqs[i+1:] {
			if next.Path == r.Path && next.Method == r.Method {
				if gap := next.Time.Sub(r.Time); gap < wait {
					t.Errorf("%s %s retried %s after a %d with Retry-After %s", r.Method, r.Path, gap, r.Status, wait)
				}
				break
			}
		}
	}
	if refused != 10 {
		t.Errorf("%d refused calls, want 10", refused)
	}
}

func TestBandCommandsSurviveRestart(t *testing.T) {
	t.Parallel()
	env := newBandEnv(t, bandemu.Options{})
	room := env.emu.AddRoom("ops", env.user.ID)
	env.emu.SetRESTDelay(2 * time.Millisecond)
	h := runBridge(t, env.spec)
	waitState(t, h, StateConnected)
	const n = 200
	for i := range n {
		publishCmd(t, h, room.ID, "send_message", fmt.Sprintf("c-%d", i), map[string]any{
			"content": fmt.Sprintf("reply %d", i), "mentions": []map[string]any{{"id": env.user.ID}}})
	}
	testutil.Eventually(t, 20*time.Second, func() bool { return len(env.emu.AgentMessages(room.ID)) >= 20 }, "some commands executed")
	h.stop()
	h = runBridge(t, env.spec)
	testutil.Eventually(t, 30*time.Second, func() bool { return len(env.emu.AgentMessages(room.ID)) >= n }, "all commands executed")
	got := env.emu.AgentMessages(room.ID)
	if len(got) != n {
		t.Fatalf("%d messages on the platform, want %d (something repeated)", len(got), n)
	}
	for i, m := range got {
		if !strings.HasSuffix(m.Content, fmt.Sprintf("reply %d", i)) {
			t.Fatalf("message %d is %q", i, m.Content)
		}
	}
}

// worker answers managed-dispatch requests with behave(attempt, event).
func worker(t *testing.T, h *harness, behave func(n int64, ev subjects.Event) []subjects.WorkReply) *atomic.Int64 {
	t.Helper()
	var calls atomic.Int64
	sub, err := h.info.Conn.QueueSubscribe("bridge.work.band.agent.>", "workers", func(m *nats.Msg) {
		n := calls.Add(1)
		ev, err := subjects.DecodeEvent(m.Data)
		if err != nil {
			t.Errorf("work request is not an event: %v", err)
			return
		}
		for _, r := range behave(n, ev) {
			b, _ := json.Marshal(r)
			_ = m.Respond(b)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return &calls
}

func dispatchSpec(env *bandEnv, timeout string, attempts int) bridgeSpec {
	s := env.spec
	s.config += fmt.Sprintf("[[dispatch]]\nconnection = \"agent\"\ntimeout = %q\nmax_attempts = %d\nbackoff_initial = \"10ms\"\nbackoff_max = \"50ms\"\n", timeout, attempts)
	return s
}

func reply(user string) []subjects.WorkReply {
	args, _ := json.Marshal(map[string]any{"content": "on it", "mentions": []map[string]any{{"id": user}}})
	return []subjects.WorkReply{{Status: "processing"}, {Status: "processed", Commands: []subjects.CommandSpec{{Command: "send_message", Args: args}}}}
}

func TestDispatchHappyPath(t *testing.T) {
	t.Parallel()
	env := newBandEnv(t, bandemu.Options{})
	room := env.emu.AddRoom("ops", env.user.ID)
	h := runBridge(t, dispatchSpec(env, "5s", 3))
	worker(t, h, func(int64, subjects.Event) []subjects.WorkReply { return reply(env.user.ID) })
	var ids []string
	for i := range 10 {
		ids = append(ids, env.emu.PostUserMessage(room.ID, env.user.ID, fmt.Sprintf("@Bridge Bot q%d", i)).ID)
	}
	testutil.Eventually(t, 20*time.Second, func() bool {
		for _, id := range ids {
			if st, _ := env.emu.Status(id); st != bandemu.StatusProcessed {
				return false
			}
		}
		return true
	}, "all processed")
	if got := env.emu.AgentMessages(room.ID); len(got) != 10 {
		t.Errorf("%d replies on the platform, want 10", len(got))
	}
	for _, id := range ids {
		if _, att := env.emu.Status(id); len(att) != 1 {
			t.Errorf("message %s: %d attempts, want 1", id, len(att))
		}
	}
}

func TestDispatchTimeoutThenSuccess(t *testing.T) {
	t.Parallel()
	env := newBandEnv(t, bandemu.Options{})
	room := env.emu.AddRoom("ops", env.user.ID)
	h := runBridge(t, dispatchSpec(env, "200ms", 3))
	worker(t, h, func(n int64, _ subjects.Event) []subjects.WorkReply {
		if n == 1 {
			return nil // silent: the attempt times out
		}
		return reply(env.user.ID)
	})
	id := env.emu.PostUserMessage(room.ID, env.user.ID, "@Bridge Bot q").ID
	testutil.Eventually(t, 20*time.Second, func() bool { st, _ := env.emu.Status(id); return st == bandemu.StatusProcessed }, "processed")
	_, att := env.emu.Status(id)
	if len(att) != 2 || att[0].Status != bandemu.AttemptFailed {
		t.Errorf("attempts: %+v", att)
	}
}

func TestDispatchFailedGoesToPlatformAndDLQ(t *testing.T) {
	t.Parallel()
	env := newBandEnv(t, bandemu.Options{})
	room := env.emu.AddRoom("ops", env.user.ID)
	h := runBridge(t, dispatchSpec(env, "2s", 3))
	dlq, err := h.info.Conn.SubscribeSync("bridge.dlq.band.agent.>")
	if err != nil {
		t.Fatal(err)
	}
	calls := worker(t, h, func(int64, subjects.Event) []subjects.WorkReply {
		return []subjects.WorkReply{{Status: "failed", Error: "model timeout", Retry: true}}
	})
	id := env.emu.PostUserMessage(room.ID, env.user.ID, "@Bridge Bot q").ID
	d, err := dlq.NextMsgWithContext(testutil.Context(t, 20*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(d.Header.Get(subjects.HeaderError), "model timeout") || d.Header.Get(subjects.HeaderAttempts) != "3" {
		t.Errorf("dead letter headers: %v", d.Header)
	}
	st, att := env.emu.Status(id)
	if st != bandemu.StatusFailed || len(att) != 3 {
		t.Errorf("platform status %q attempts %d", st, len(att))
	}
	if c := calls.Load(); c != 3 {
		t.Errorf("worker called %d times, want 3", c)
	}
	// Garbage replies are failed attempts with a clear reason, nothing crashes.
	_ = d
}

func TestDispatchWaitsForWorkers(t *testing.T) {
	t.Parallel()
	env := newBandEnv(t, bandemu.Options{})
	room := env.emu.AddRoom("ops", env.user.ID)
	h := runBridge(t, dispatchSpec(env, "2s", 2))
	id := env.emu.PostUserMessage(room.ID, env.user.ID, "@Bridge Bot q").ID
	// No worker yet: after well over max_attempts backoffs the message still waits.
	testutil.Eventually(t, 10*time.Second, func() bool { return totalStored(t, h.js) == 1 }, "stored")
	time.Sleep(300 * time.Millisecond) // let several no-responder waits pass (not synchronisation: a duration under test)
	if st, att := env.emu.Status(id); st == bandemu.StatusFailed || len(att) != 0 {
		t.Fatalf("message failed while no worker existed: %q %+v", st, att)
	}
	worker(t, h, func(n int64, _ subjects.Event) []subjects.WorkReply {
		if n == 1 {
			return []subjects.WorkReply{{Status: "garbage"}}
		}
		return []subjects.WorkReply{{Status: "processed"}}
	})
	testutil.Eventually(t, 20*time.Second, func() bool { st, _ := env.emu.Status(id); return st == bandemu.StatusProcessed }, "processed after bad reply and retry")
	_ = context.Background
}
