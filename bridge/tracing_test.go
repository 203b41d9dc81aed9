package bridge

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/bridgeworks/bridge/emulator/bandemu"
	"github.com/bridgeworks/bridge/internal/testutil"
	"github.com/bridgeworks/bridge/subjects"
	"github.com/bridgeworks/bridge/tracing"
)

// TestOneTraceFromEventToRESTCall: with tracing on, a user message's trace
// runs from the platform event through its stored message, managed
// dispatch and the work request the worker gets, to the worker's reply
// command and the REST call that posts it, which carries the same trace id
// to the platform.
func TestOneTraceFromEventToRESTCall(t *testing.T) {
	t.Parallel()
	exp := tracetest.NewInMemoryExporter()
	tp := tracing.NewProvider(sdktrace.WithSyncer(exp), tracing.Config{Enabled: true})
	t.Cleanup(func() { _ = tp.Shutdown(t.Context()) })

	env := newBandEnv(t, bandemu.Options{})
	room := env.emu.AddRoom("ops", env.user.ID)
	spec := dispatchSpec(env, "5s", 3)
	spec.tracer = tp
	h := runBridge(t, spec)

	var mu sync.Mutex
	workTrace := ""
	sub, err := h.info.Conn.QueueSubscribe("bridge.work.band.agent.>", "workers", func(m *nats.Msg) {
		mu.Lock()
		workTrace = m.Header.Get("traceparent")
		mu.Unlock()
		for _, r := range reply(env.user.ID) {
			b := []byte(`{"status":"` + string(r.Status) + `"}`)
			if r.Status == subjects.WorkProcessed {
				b = []byte(`{"status":"processed","commands":[{"command":"send_message","args":{"content":"on it","mentions":[{"id":"` + env.user.ID + `"}]}}]}`)
			}
			_ = m.Respond(b)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })

	id := env.emu.PostUserMessage(room.ID, env.user.ID, "@Bridge Bot trace me").ID
	testutil.Eventually(t, 20*time.Second, func() bool {
		st, _ := env.emu.Status(id)
		return st == bandemu.StatusProcessed
	}, "message processed")

	// The dispatch span ends once its handler returns, a moment after the
	// platform shows the message processed.
	testutil.Eventually(t, 10*time.Second, func() bool {
		n := 0
		for _, s := range exp.GetSpans().Snapshots() {
			if s.Name() == "dispatch message_created" {
				n++
			}
		}
		return n > 0
	}, "dispatch span ended")
	spans := exp.GetSpans()
	var event sdktrace.ReadOnlySpan
	byName := map[string]int{}
	for _, s := range spans.Snapshots() {
		byName[s.Name()]++
		if s.Name() == "event message_created" {
			event = s
		}
	}
	if event == nil {
		t.Fatalf("no event span; spans: %v", byName)
	}
	traceID := event.SpanContext().TraceID()
	inTrace := map[string]bool{}
	for _, s := range spans.Snapshots() {
		if s.SpanContext().TraceID() == traceID {
			inTrace[s.Name()] = true
		}
	}
	for _, want := range []string{"event message_created", "dispatch message_created", "command send_message"} {
		if !inTrace[want] {
			t.Errorf("span %q is not in the event's trace %s; spans: %v", want, traceID, byName)
		}
	}
	mu.Lock()
	wt := workTrace
	mu.Unlock()
	if !strings.Contains(wt, traceID.String()) {
		t.Errorf("the work request's traceparent %q is not in trace %s", wt, traceID)
	}
	posted := false
	for _, r := range env.emu.Requests() {
		if r.Method == "POST" && strings.HasSuffix(r.Path, "/messages") && strings.Contains(r.TraceParent, traceID.String()) {
			posted = true
		}
	}
	if !posted {
		t.Errorf("no REST call posting the reply carried trace %s", traceID)
	}
}
