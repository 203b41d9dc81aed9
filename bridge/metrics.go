package bridge

import (
	"runtime"
	"sync"
	"time"

	"github.com/bridgeworks/bridge/connector"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"
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
	retryAt        *prometheus.GaugeVec
	leaseHeld      *prometheus.GaugeVec
	handovers      *prometheus.CounterVec
	conns          *connRegistries
}

// connRegistries hold what each connection's command executor and
// dispatch register: a registry per connection, gathered with the main
// one, so a connection a reload restarts registers afresh and one it
// removes takes its series along.
type connRegistries struct {
	mu   sync.Mutex
	regs map[string]*prometheus.Registry
}

// forConn returns metrics whose registry is a new one of connection name
// (replacing any earlier one); the other metrics are shared.
func (m *metrics) forConn(name string) *metrics {
	reg := prometheus.NewRegistry()
	m.conns.mu.Lock()
	m.conns.regs[name] = reg
	m.conns.mu.Unlock()
	cm := *m
	cm.reg = reg
	return &cm
}

// dropConn forgets connection name's registry and its series.
func (m *metrics) dropConn(name string) {
	m.conns.mu.Lock()
	delete(m.conns.regs, name)
	m.conns.mu.Unlock()
}

// gatherer gathers the main registry and every connection's.
func (m *metrics) gatherer() prometheus.Gatherer {
	return prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		m.conns.mu.Lock()
		gs := prometheus.Gatherers{m.reg}
		for _, r := range m.conns.regs {
			gs = append(gs, r)
		}
		m.conns.mu.Unlock()
		return gs.Gather()
	})
}

// newMetrics registers the bridge's metrics; natsConnected is read at
// every scrape (false until the first connect).
func newMetrics(version string, natsConnected func() bool) *metrics {
	m := &metrics{
		reg:   prometheus.NewRegistry(),
		conns: &connRegistries{regs: map[string]*prometheus.Registry{}},
		retryAt: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "bridge_connection_retry_timestamp_seconds",
			Help: "When the connection tries to connect again (Unix time) while it waits after a loss, a supersede or a refusal; 0 when not waiting.",
		}, []string{"connection"}),
		handovers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bridge_lease_handovers_total",
			Help: "Lease changes of this process by connection and event: acquired, released (stopped here), moved (handed to the process it is assigned to), lost.",
		}, []string{"connection", "event"}),
		leaseHeld: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "bridge_lease_held", Help: "1 while this process holds the connection's lease (and runs it), 0 while another does or none.",
		}, []string{"connection"}),
		state: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "bridge_connection_state", Help: "1 for the connection's current state; the series of its other states are absent.",
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
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "bridge_build_info", Help: "Always 1; the labels say which build runs.",
		ConstLabels: prometheus.Labels{"version": version, "go": runtime.Version()},
	})
	build.Set(1)
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.state, m.reconnects, m.published, m.gapFilled, m.alreadyStored, m.publishErrors, m.publishLatency, m.offloaded,
		m.retryAt, m.leaseHeld, m.handovers, build,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "bridge_nats_connected", Help: "1 while the bridge's NATS connection is up, 0 while it is down or not yet made.",
		}, func() float64 { return b2f(natsConnected()) }),
	)
	return m
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// setRetryAt exports when name tries again (zero: not waiting).
func (m *metrics) setRetryAt(name string, at time.Time) {
	v := 0.0
	if !at.IsZero() {
		v = float64(at.UnixMilli()) / 1000
	}
	m.retryAt.WithLabelValues(name).Set(v)
}

func (m *metrics) setLeaseHeld(name string, held bool) {
	m.leaseHeld.WithLabelValues(name).Set(b2f(held))
}

// handover counts a lease event (acquired, released, moved, lost) of name.
func (m *metrics) handover(name, event string) {
	m.handovers.WithLabelValues(name, event).Inc()
}

// forget drops the series of a connection a reload removed.
func (m *metrics) forget(name string) {
	for _, v := range []interface {
		DeletePartialMatch(prometheus.Labels) int
	}{m.state, m.reconnects, m.published, m.gapFilled, m.alreadyStored, m.publishErrors, m.publishLatency, m.offloaded, m.retryAt, m.leaseHeld, m.handovers} {
		v.DeletePartialMatch(prometheus.Labels{"connection": name})
	}
}

// setState exports st as the one series of name: the series of its other
// states are deleted, not set to 0 (ten series per connection were about
// 5 KiB of memory each, for series that only ever read 0).
func (m *metrics) setState(name, platform string, st State) {
	m.state.WithLabelValues(name, platform, string(st)).Set(1)
	for _, s := range allStates {
		if s != st {
			m.state.DeleteLabelValues(name, platform, string(s))
		}
	}
}

// watchStats exports a connector's own counters at scrape time, until the
// returned func unregisters them (the connector stopped for good).
func (m *metrics) watchStats(name string, sr connector.StatsReporter) (unwatch func()) {
	labels := prometheus.Labels{"connection": name}
	cs := []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "bridge_socket_missed_heartbeats_total", Help: "Heartbeats the platform left unanswered.", ConstLabels: labels,
		}, func() float64 { return float64(sr.Stats().MissedHeartbeats) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "bridge_socket_reconnects_total", Help: "Socket reconnects inside the connector.", ConstLabels: labels,
		}, func() float64 { return float64(sr.Stats().Reconnects) }),
	}
	m.reg.MustRegister(cs...)
	return func() {
		for _, c := range cs {
			m.reg.Unregister(c)
		}
	}
}
