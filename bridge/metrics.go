package bridge

import (
	"github.com/bridgeworks/bridge/connector"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the bridge's Prometheus metrics, on a registry of its own.
type metrics struct {
	reg            *prometheus.Registry
	state          *prometheus.GaugeVec
	reconnects     *prometheus.CounterVec
	published      *prometheus.CounterVec
	gapFilled      *prometheus.CounterVec
	alreadyStored  *prometheus.CounterVec
	publishErrors  *prometheus.CounterVec
	publishLatency *prometheus.HistogramVec
	offloaded      *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		state: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "bridge_connection_state", Help: "1 for the connection's current state, 0 for the others.",
		}, []string{"connection", "platform", "state"}),
		reconnects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bridge_connection_reconnects_total", Help: "Sessions the supervisor restarted after a loss.",
		}, []string{"connection"}),
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bridge_events_published_total", Help: "Events stored in JetStream (kind evt or sys).",
		}, []string{"connection", "kind"}),
		gapFilled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bridge_events_gap_filled_total", Help: "Events found by catch-up after a (re)connect and published.",
		}, []string{"connection"}),
		alreadyStored: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bridge_events_already_stored_total", Help: "Events found by catch-up that an earlier run had stored: acknowledged, not stored again.",
		}, []string{"connection"}),
		publishErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bridge_publish_errors_total", Help: "JetStream publish attempts that failed and were retried.",
		}, []string{"connection"}),
		publishLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "bridge_publish_latency_seconds", Help: "From an event's receipt from the connector to its JetStream PubAck.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}, []string{"connection"}),
		offloaded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bridge_events_offloaded_total", Help: "Events larger than NATS max_payload whose data went to the payload bucket (published with a reference).",
		}, []string{"connection"}),
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.state, m.reconnects, m.published, m.gapFilled, m.alreadyStored, m.publishErrors, m.publishLatency, m.offloaded,
	)
	return m
}

func (m *metrics) setState(name, platform string, st State) {
	for _, s := range allStates {
		v := 0.0
		if s == st {
			v = 1
		}
		m.state.WithLabelValues(name, platform, string(s)).Set(v)
	}
}

// watchStats exports a connector's own counters at scrape time.
func (m *metrics) watchStats(name string, sr connector.StatsReporter) {
	labels := prometheus.Labels{"connection": name}
	m.reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "bridge_socket_missed_heartbeats_total", Help: "Heartbeats the platform left unanswered.", ConstLabels: labels,
		}, func() float64 { return float64(sr.Stats().MissedHeartbeats) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "bridge_socket_reconnects_total", Help: "Socket reconnects inside the connector.", ConstLabels: labels,
		}, func() float64 { return float64(sr.Stats().Reconnects) }),
	)
}
