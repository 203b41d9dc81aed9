package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/trace"

	"github.com/bridgeworks/bridge/config"
	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/internal/testutil"
	"github.com/bridgeworks/bridge/subjects"
)

// scripted is a connector driven by the test: it hands out the events put on
// its channel and fails sessions on demand. It stands in for a platform only
// to exercise the supervisor and publisher; platforms are tested against
// their emulators.
type scripted struct {
	events   chan connector.Event
	fail     chan error
	mu       sync.Mutex
	connects int
	closes   int
	acked    []string
}

func newScripted() *scripted {
	return &scripted{events: make(chan connector.Event, 1024), fail: make(chan error, 1)}
}

func (s *scripted) Connect(ctx context.Context) error {
	s.mu.Lock()
	s.connects++
	s.mu.Unlock()
	return nil
}

func (s *scripted) Receive(ctx context.Context) (connector.Event, connector.AckFunc, error) {
	select {
	case ev := <-s.events:
		return ev, func(_ context.Context, err error) {
			if err == nil {
				s.mu.Lock()
				s.acked = append(s.acked, ev.Key)
				s.mu.Unlock()
			}
		}, nil
	case err := <-s.fail:
		return connector.Event{}, nil, err
	case <-ctx.Done():
		return connector.Event{}, nil, ctx.Err()
	}
}

func (s *scripted) Close(context.Context) error {
	s.mu.Lock()
	s.closes++
	s.mu.Unlock()
	return nil
}

func (s *scripted) counts() (connects, acked int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.connects, len(s.acked)
}

type harness struct {
	info Info
	b    *Bridge
	cfg  *config.Config // the config it runs on
	conn *scripted
	stop func() // stops the bridge and waits for Run; idempotent
	js   jetstream.JetStream
}

// bridgeSpec says how to run a bridge in a test.
type bridgeSpec struct {
	config   string // TOML; embedded NATS and HTTP on random ports are added
	storeDir string // JetStream store; t.TempDir() when empty
	registry connector.Registry
	env      map[string]string
	natsURL  string               // external NATS; embedded when empty
	tweak    func(*config.Config) // changes past validation (e.g. a tiny window); nil for none
	logs     *logBuffer           // captures the log at debug level when set
	tracer   trace.TracerProvider // traces when set
	// releaseAfter is Options.CommandsReleaseAfter; 0: the default.
	releaseAfter time.Duration
}

// runBridge starts a bridge and waits until it is ready; it is stopped at
// test cleanup (or earlier with h.stop).
func runBridge(t *testing.T, spec bridgeSpec) *harness {
	t.Helper()
	c, err := config.Parse([]byte("[nats.embedded]\nlisten = \"127.0.0.1:0\"\n[http]\nlisten = \"127.0.0.1:0\"\n"+spec.config), nil)
	if err != nil {
		t.Fatal(err)
	}
	c.NATS.URL = spec.natsURL
	for i := range c.Connection { // test-sized reconnect waits; tweak may change them
		c.Connection[i].ReconnectInitial = config.Duration(time.Millisecond)
		c.Connection[i].ReconnectMax = config.Duration(10 * time.Millisecond)
	}
	if spec.tweak != nil {
		spec.tweak(c)
	}
	c.NATS.Embedded.StoreDir = spec.storeDir
	if c.NATS.Embedded.StoreDir == "" {
		c.NATS.Embedded.StoreDir = t.TempDir()
	}
	ready := make(chan Info, 1)
	log := testutil.Logger(t)
	if spec.logs != nil {
		log = zerolog.New(spec.logs).Level(zerolog.DebugLevel)
	}
	b, err := New(c, Options{
		Log: log, Registry: spec.registry, OnReady: func(i Info) { ready <- i },
		LookupEnv:      func(k string) (string, bool) { v, ok := spec.env[k]; return v, ok },
		TracerProvider: spec.tracer, CommandsReleaseAfter: spec.releaseAfter,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	var once sync.Once
	h := &harness{b: b, cfg: c, stop: func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}}
	t.Cleanup(h.stop)
	select {
	case h.info = <-ready:
	case err := <-done:
		t.Fatalf("Run ended early: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("bridge not ready")
	}
	h.js, err = jetstream.New(h.info.Conn)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func startBridge(t *testing.T) *harness {
	t.Helper()
	sc := newScripted()
	reg := connector.Registry{"fake": {Platform: "fake", New: func(cfg connector.Config, _ connector.Deps) (connector.Connector, error) {
		if k, err := cfg.Secrets.Get("api_key"); err != nil || k != "k3y" {
			return nil, fmt.Errorf("api key not resolved")
		}
		return sc, nil
	}}}
	h := runBridge(t, bridgeSpec{
		config:   "[[connection]]\nname = \"c1\"\nplatform = \"fake\"\n[connection.settings]\napi_key_env = \"FAKE_KEY\"\n",
		registry: reg, env: map[string]string{"FAKE_KEY": "k3y"},
	})
	h.conn = sc
	return h
}

func TestBridgePublishesEventsInOrderOnce(t *testing.T) {
	t.Parallel()
	h := startBridge(t)
	ctx := testutil.Context(t, 30*time.Second)
	const n = 200
	for i := range n {
		room := fmt.Sprintf("room.%d", i%4)
		h.conn.events <- connector.Event{Room: room, Name: "message_created", Key: fmt.Sprintf("m%d", i), Data: json.RawMessage(fmt.Sprintf(`{"seq":%d}`, i))}
	}
	// The same platform event seen twice (socket and gap-fill) is stored once.
	h.conn.events <- connector.Event{Room: "room.0", Name: "message_created", Key: "m0", Data: json.RawMessage(`{"seq":0}`)}
	testutil.Eventually(t, 10*time.Second, func() bool { _, a := h.conn.counts(); return a == n+1 }, "all events acked")

	st, err := h.js.Stream(ctx, "BRIDGE_EVENTS")
	if err != nil {
		t.Fatal(err)
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"bridge.evt.>"}})
	if err != nil {
		t.Fatal(err)
	}
	last := map[string]int{}
	for i := 0; i < n; i++ {
		msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if ct := msg.Headers().Get(subjects.HeaderContentType); ct != subjects.ContentTypeCloudEvents {
			t.Fatalf("content type %q", ct)
		}
		ev, err := subjects.DecodeEvent(msg.Data())
		if err != nil {
			t.Fatal(err)
		}
		if msg.Headers().Get(subjects.HeaderMsgID) != ev.ID {
			t.Fatalf("Nats-Msg-Id %q != id %q", msg.Headers().Get(subjects.HeaderMsgID), ev.ID)
		}
		subj, err := subjects.Parse("bridge", msg.Subject())
		if err != nil || subj.Room != ev.Room || subj.Platform != "fake" || subj.Conn != "c1" {
			t.Fatalf("subject %q for room %q: %v", msg.Subject(), ev.Room, err)
		}
		var d struct{ Seq int }
		_ = json.Unmarshal(ev.Data, &d)
		if prev, ok := last[ev.Room]; ok && d.Seq <= prev {
			t.Fatalf("room %s out of order: %d after %d", ev.Room, d.Seq, prev)
		}
		last[ev.Room] = d.Seq
	}
	// Exactly n stored (the duplicate was dropped by the dedupe window).
	var cnt uint64
	for _, c := range countBySubject(t, ctx, st) {
		cnt += c
	}
	if cnt != n {
		t.Fatalf("stored %d events, want %d", cnt, n)
	}
}

func countBySubject(t *testing.T, ctx context.Context, st jetstream.Stream) map[string]uint64 {
	t.Helper()
	info, err := st.Info(ctx, jetstream.WithSubjectFilter("bridge.evt.>"))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Subjects
}

func TestBridgeReconnectsAndStopsOnPermanent(t *testing.T) {
	t.Parallel()
	h := startBridge(t)
	ctx := testutil.Context(t, 30*time.Second)
	sub, err := h.info.Conn.SubscribeSync("bridge.sys.fake.c1.>")
	if err != nil {
		t.Fatal(err)
	}
	h.conn.fail <- errors.New("socket dropped")
	testutil.Eventually(t, 10*time.Second, func() bool { c, _ := h.conn.counts(); return c >= 2 }, "reconnected")
	h.conn.fail <- connector.Permanent(connector.ErrSuperseded)
	testutil.Eventually(t, 10*time.Second, func() bool { return statusOf(t, h.info.HTTPAddr) == StateSuperseded }, "superseded on /status")
	seen := map[string]bool{}
	for !seen["superseded"] {
		msg, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			t.Fatalf("lifecycle events seen %v: %v", seen, err)
		}
		seen[msg.Subject[strings.LastIndex(msg.Subject, ".")+1:]] = true
	}
	for _, want := range []string{"connected", "disconnected", "reconnecting"} {
		if !seen[want] {
			t.Errorf("no %s lifecycle event (saw %v)", want, seen)
		}
	}
	body := get(t, "http://"+h.info.HTTPAddr+"/metrics")
	if !strings.Contains(body, `bridge_connection_state{connection="c1",platform="fake",state="superseded"} 1`) {
		t.Errorf("metrics do not show superseded:\n%s", grep(body, "bridge_connection_state"))
	}
}

func TestHTTPEndpoints(t *testing.T) {
	t.Parallel()
	h := startBridge(t)
	if body := get(t, "http://"+h.info.HTTPAddr+"/readyz"); !strings.Contains(body, "ready") {
		t.Fatalf("readyz: %q", body)
	}
	if body := get(t, "http://"+h.info.HTTPAddr+"/healthz"); !strings.Contains(body, "ok") {
		t.Fatalf("healthz: %q", body)
	}
	body := get(t, "http://"+h.info.HTTPAddr+"/metrics")
	for _, want := range []string{"go_goroutines", "process_resident_memory_bytes", "bridge_connection_state"} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func statusOf(t *testing.T, addr string) State {
	var st struct{ Connections []ConnStatus }
	if err := json.Unmarshal([]byte(get(t, "http://"+addr+"/status")), &st); err != nil || len(st.Connections) == 0 {
		return ""
	}
	return st.Connections[0].State
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
