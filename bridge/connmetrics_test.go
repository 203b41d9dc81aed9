package bridge

import (
	"bytes"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

// TestConnSeriesAsVectors: the per-connection collector exports what the
// Prometheus vectors it replaced exported for the same calls: the same
// names, help, types, labels and values, a series only once it was set, and
// none of a forgotten connection.
func TestConnSeriesAsVectors(t *testing.T) {
	t.Parallel()
	m := newMetrics("test", func() bool { return true })

	conn := []string{"connection"}
	state := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "bridge_connection_state",
		Help: "1 for the connection's current state; the series of its other states are absent."}, []string{"connection", "platform", "state"})
	retryAt := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "bridge_connection_retry_timestamp_seconds",
		Help: "When the connection tries to connect again (Unix time) while it waits after a loss, a supersede or a refusal; 0 when not waiting."}, conn)
	leaseHeld := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "bridge_lease_held",
		Help: "1 while this process holds the connection's lease (and runs it), 0 while another does or none."}, conn)
	handovers := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bridge_lease_handovers_total",
		Help: "Lease changes of this process by connection and event: acquired, released (stopped here), moved (handed to the process it is assigned to), lost."}, []string{"connection", "event"})
	reconnects := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bridge_connection_reconnects_total", Help: "Sessions the supervisor restarted after a loss."}, conn)
	published := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bridge_events_published_total", Help: "Events stored in JetStream (kind evt or sys)."}, []string{"connection", "kind"})
	gapFilled := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bridge_events_gap_filled_total", Help: "Events found by catch-up after a (re)connect and published."}, conn)
	already := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bridge_events_already_stored_total",
		Help: "Events found by catch-up that an earlier run had stored: acknowledged, not stored again."}, conn)
	pubErrs := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bridge_publish_errors_total", Help: "JetStream publish attempts that failed and were retried."}, conn)
	latency := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "bridge_publish_latency_seconds",
		Help: "From an event's receipt from the connector to its JetStream PubAck.", Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)}, conn)
	offloaded := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bridge_events_offloaded_total",
		Help: "Events larger than NATS max_payload whose data went to the payload bucket (published with a reference)."}, conn)
	want := prometheus.NewRegistry()
	want.MustRegister(state, retryAt, leaseHeld, handovers, reconnects, published, gapFilled, already, pubErrs, latency, offloaded)

	at := time.UnixMilli(1_700_000_000_250)
	for _, c := range []string{"a", "b", "gone"} {
		m.setState(c, "band", StateStarting)
		state.WithLabelValues(c, "band", string(StateStarting)).Set(1)
		m.setLeaseHeld(c, true)
		leaseHeld.WithLabelValues(c).Set(1)
		m.handover(c, "acquired")
		handovers.WithLabelValues(c, "acquired").Inc()
		m.count(c, cPublishedSys)
		published.WithLabelValues(c, "sys").Inc()
	}
	m.setState("a", "band", StateConnected)
	state.DeleteLabelValues("a", "band", string(StateStarting))
	state.WithLabelValues("a", "band", string(StateConnected)).Set(1)
	m.setRetryAt("a", at)
	retryAt.WithLabelValues("a").Set(float64(at.UnixMilli()) / 1000)
	m.setRetryAt("b", time.Time{})
	retryAt.WithLabelValues("b").Set(0)
	m.setLeaseHeld("b", false)
	leaseHeld.WithLabelValues("b").Set(0)
	for _, ev := range []string{"released", "moved", "lost", "lost"} {
		m.handover("b", ev)
		handovers.WithLabelValues("b", ev).Inc()
	}
	for range 3 {
		m.count("a", cReconnects)
		reconnects.WithLabelValues("a").Inc()
		m.count("a", cPublishedEvt)
		published.WithLabelValues("a", "evt").Inc()
	}
	m.count("b", cGapFilled)
	gapFilled.WithLabelValues("b").Inc()
	m.count("b", cAlreadyStored)
	already.WithLabelValues("b").Inc()
	m.count("a", cPublishErrors)
	pubErrs.WithLabelValues("a").Inc()
	for _, c := range []string{"b", "gone"} {
		m.count(c, cOffloaded)
		offloaded.WithLabelValues(c).Inc()
	}
	// Below the first bound, on bounds, between them and above the last.
	for _, v := range []float64{0, 0.00005, 0.0001, 0.00015, 0.0002, 0.05, 1.6384, 3.2768, 3.3, 120} {
		m.publishLatency("a", v)
		latency.WithLabelValues("a").Observe(v)
	}
	m.publishLatency("gone", 0.01)
	latency.WithLabelValues("gone").Observe(0.01)

	m.forget("gone")
	for _, v := range []interface {
		DeletePartialMatch(prometheus.Labels) int
	}{state, retryAt, leaseHeld, handovers, reconnects, published, gapFilled, already, pubErrs, latency, offloaded} {
		v.DeletePartialMatch(prometheus.Labels{"connection": "gone"})
	}

	text := func(g prometheus.Gatherer, keep func(string) bool) string {
		fams, err := g.Gather()
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		for _, f := range fams {
			if keep(f.GetName()) {
				if _, err := expfmt.MetricFamilyToText(&buf, f); err != nil {
					t.Fatal(err)
				}
			}
		}
		return buf.String()
	}
	wantText := text(want, func(string) bool { return true })
	names := map[string]bool{}
	wfams, _ := want.Gather()
	for _, f := range wfams {
		names[f.GetName()] = true
	}
	if len(names) != 11 {
		t.Fatalf("the vectors export %d families, want 11:\n%s", len(names), wantText)
	}
	if got := text(m.reg, func(n string) bool { return names[n] }); got != wantText {
		t.Errorf("the collector exports\n%s\nthe vectors\n%s", got, wantText)
	}
}
