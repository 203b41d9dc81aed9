package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bridgeworks/bridge/config"
	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/emulator/bandemu"
	"github.com/bridgeworks/bridge/internal/testutil"
	"github.com/bridgeworks/bridge/subjects"
)

// storedLifecycle reads every lifecycle event of the connection from
// BRIDGE_EVENTS, in order: name and data.
func storedLifecycle(t *testing.T, js jetstream.JetStream) (names []string, data []map[string]any) {
	t.Helper()
	ctx := testutil.Context(t, 20*time.Second)
	st, err := js.Stream(ctx, "BRIDGE_EVENTS")
	if err != nil {
		t.Fatal(err)
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"bridge.sys.band.agent.*"}})
	if err != nil {
		t.Fatal(err)
	}
	for {
		msg, err := cons.Next(jetstream.FetchMaxWait(300 * time.Millisecond))
		if err != nil {
			return names, data
		}
		s, err := subjects.Parse("bridge", msg.Subject())
		if err != nil {
			t.Fatal(err)
		}
		ev, err := subjects.DecodeEvent(msg.Data())
		if err != nil {
			t.Fatal(err)
		}
		var d map[string]any
		_ = json.Unmarshal(ev.Data, &d)
		names, data = append(names, s.Name), append(data, d)
	}
}

// A socket drop and a supersede, end to end against the emulator: every
// lifecycle event the bridge stores is one subjects.Lifecycles lists, and
// each transition is reported once (the connector reports the drop it
// recovers from; the end of the session only the supervisor reports).
func TestBandLifecycleEventsTypedAndOnce(t *testing.T) {
	t.Parallel()
	env := newBandEnv(t, bandemu.Options{})
	h := runBridge(t, env.spec)
	waitState(t, h, StateConnected)
	count := func(name string) int {
		names, _ := storedLifecycle(t, h.js)
		n := 0
		for _, x := range names {
			if x == name {
				n++
			}
		}
		return n
	}
	testutil.Eventually(t, 20*time.Second, func() bool { return count("gap_filled") == 1 }, "first catch-up reported")

	env.emu.DropSockets()
	testutil.Eventually(t, 20*time.Second, func() bool { return count("gap_filled") == 2 && statusOf(t, h.info.HTTPAddr) == StateConnected },
		"reconnected and caught up")
	env.emu.Supersede()
	waitState(t, h, StateSuperseded)
	testutil.Eventually(t, 20*time.Second, func() bool { return count("superseded") == 1 }, "superseded stored")

	names, data := storedLifecycle(t, h.js)
	got := map[string]int{}
	for i, n := range names {
		if !subjects.IsLifecycle(n) {
			t.Errorf("lifecycle event %q is not in subjects.Lifecycles", n)
		}
		got[n]++
		if n == "connected" && i > 0 && data[i]["reconnect"] != true && got[n] > 1 {
			t.Errorf("the socket's reconnect is not marked reconnect: %v", data[i])
		}
	}
	want := map[string]int{"lease_acquired": 1, "connected": 2, "disconnected": 1, "gap_filled": 2, "superseded": 1}
	for n, c := range want {
		if got[n] != c {
			t.Errorf("%s stored %d times, want %d (all: %v)", n, got[n], c, names)
		}
	}
	if c := connStatus(h.info.HTTPAddr); c.Reconnects != 1 {
		t.Errorf("/status counts %d reconnects, want 1 (one socket drop)", c.Reconnects)
	}
}

// A connector's transient event carries transient: true; its lifecycle
// event may name a room; a lifecycle name not in subjects.Lifecycles is
// never published (its ack gets the error).
func TestConnectorLifecycleRoomAndTransient(t *testing.T) {
	t.Parallel()
	h := startBridge(t)
	ctx := testutil.Context(t, 20*time.Second)
	sub, err := h.info.Conn.SubscribeSync("bridge.>")
	if err != nil {
		t.Fatal(err)
	}
	h.conn.events <- connector.Event{Lifecycle: "no_such_lifecycle", Data: json.RawMessage(`{}`)}
	h.conn.events <- connector.Event{Room: "r1", Name: "typing", Key: "t1", Transient: true, Data: json.RawMessage(`{}`)}
	h.conn.events <- connector.Event{Lifecycle: subjects.LifecycleDisconnected, Room: "r1", Key: "s1", Data: json.RawMessage(`{"reason":"session closed"}`)}
	var got []subjects.Event
	subjs := []string{}
	for len(got) < 2 {
		msg, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			t.Fatalf("got %v: %v", subjs, err)
		}
		if msg.Subject == "bridge.sys.fake.c1.connected" || msg.Subject == "bridge.sys.fake.c1.lease_acquired" {
			continue
		}
		ev, err := subjects.DecodeEvent(msg.Data)
		if err != nil {
			t.Fatal(err)
		}
		got, subjs = append(got, ev), append(subjs, msg.Subject)
	}
	if subjs[0] != "bridge.evt.fake.c1.r1.typing" || !got[0].Transient {
		t.Errorf("transient event: %s %+v", subjs[0], got[0])
	}
	if subjs[1] != "bridge.sys.fake.c1.disconnected" || got[1].Room != "r1" || got[1].Transient {
		t.Errorf("lifecycle event with a room: %s %+v", subjs[1], got[1])
	}
	testutil.Eventually(t, 10*time.Second, func() bool { _, a := h.conn.counts(); return a == 2 }, "two events acked")
	if st := statusOf(t, h.info.HTTPAddr); st != StateConnected {
		t.Errorf("a room's disconnected made the connection %s", st)
	}
}

// failing is a connector whose Connect always fails (transiently); it
// records when each attempt came.
type failing struct {
	mu    sync.Mutex
	times []time.Time
}

func (f *failing) Connect(context.Context) error {
	f.mu.Lock()
	f.times = append(f.times, time.Now())
	f.mu.Unlock()
	return errors.New("platform unreachable")
}
func (f *failing) Receive(context.Context) (connector.Event, connector.AckFunc, error) {
	return connector.Event{}, nil, connector.ErrNotConnected
}
func (f *failing) Close(context.Context) error { return nil }

func (f *failing) attempts() []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Time(nil), f.times...)
}

// The supervisor waits between failed connects as the connection's
// reconnect_initial / reconnect_max say (equal jitter: between half and all
// of the computed wait), and the connector is given the same policy.
func TestReconnectPolicyFromConfig(t *testing.T) {
	t.Parallel()
	f := &failing{}
	policy := make(chan connector.Config, 1)
	reg := connector.Registry{"fake": {Platform: "fake", New: func(cfg connector.Config, _ connector.Deps) (connector.Connector, error) {
		policy <- cfg
		return f, nil
	}}}
	runBridge(t, bridgeSpec{
		config: "[[connection]]\nname = \"c1\"\nplatform = \"fake\"\n", registry: reg,
		tweak: func(c *config.Config) {
			c.Connection[0].ReconnectInitial = config.Duration(200 * time.Millisecond)
			c.Connection[0].ReconnectMax = config.Duration(400 * time.Millisecond)
		},
	})
	if cfg := <-policy; cfg.Reconnect.Initial != 200*time.Millisecond || cfg.Reconnect.Max != 400*time.Millisecond {
		t.Errorf("connector got reconnect policy %+v", cfg.Reconnect)
	}
	testutil.Eventually(t, 20*time.Second, func() bool { return len(f.attempts()) >= 4 }, "four connect attempts")
	at := f.attempts()
	for i, want := range []time.Duration{200 * time.Millisecond, 400 * time.Millisecond, 400 * time.Millisecond} {
		gap := at[i+1].Sub(at[i])
		if gap < want/2 || gap > want+2*time.Second {
			t.Errorf("wait %d was %s, want between %s and %s (+ scheduling)", i+1, gap, want/2, want)
		}
	}
}
