package bridge

import (
	"runtime"
	"sync"
	"time"

	"github.com/bridgeworks/bridge/cmdexec"
	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/dispatch"
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
	retryAt        *prometheus.GaugeVec
	leaseHeld      *prometheus.GaugeVec
	handovers      *prometheus.CounterVec
	cmd            *cmdexec.Metrics  // every connection's executor
	dispatch       *dispatch.Metrics // every connection's dispatch rule
	sockets        *socketStats      // every connector's own counters
}

// forgetReturnPath deletes the command and dispatch series of connection
// name: a connection a reload stopped, or restarts (its new run starts
// them afresh).
func (m *metrics) forgetReturnPath(name string) {
	m.cmd.Forget(name)
	m.dispatch.Forget(name)
}

// newMetrics registers the bridge's metrics; natsConnected is read at
// every scrape (false until the first connect).
func newMetrics(version string, natsConnected func() bool) *metrics {
	m := &metrics{
		reg:     prometheus.NewRegistry(),
		sockets: newSocketStats(),
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
		m.retryAt, m.leaseHeld, m.handovers, m.sockets, build,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "bridge_nats_connected", Help: "1 while the bridge's NATS connection is up, 0 while it is down or not yet made.",
		}, func() float64 { return b2f(natsConnected()) }),
	)
	var err error
	m.cmd, err = cmdexec.NewMetrics(m.reg)
	if err == nil {
		m.dispatch, err = dispatch.NewMetrics(m.reg)
	}
	if err != nil {
		panic(err) // a fresh registry takes them: a programming error
	}
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
// returned func forgets them (the connector stopped for good).
func (m *metrics) watchStats(name string, sr connector.StatsReporter) (unwatch func()) {
	return m.sockets.watch(name, sr)
}

// socketStats is one collector for the connectors' own counters of every
// connection: two descriptions for the process, read from each
// connection's StatsReporter at scrape time.
type socketStats struct {
	missed, reconnects *prometheus.Desc

	mu    sync.Mutex
	conns map[string]connector.StatsReporter
}

func newSocketStats() *socketStats {
	conn := []string{"connection"}
	return &socketStats{
		missed:     prometheus.NewDesc("bridge_socket_missed_heartbeats_total", "Heartbeats the platform left unanswered.", conn, nil),
		reconnects: prometheus.NewDesc("bridge_socket_reconnects_total", "Socket reconnects inside the connector.", conn, nil),
		conns:      map[string]connector.StatsReporter{},
	}
}

func (s *socketStats) watch(name string, sr connector.StatsReporter) func() {
	s.mu.Lock()
	s.conns[name] = sr
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		if s.conns[name] == sr {
			delete(s.conns, name)
		}
		s.mu.Unlock()
	}
}

func (s *socketStats) Describe(ch chan<- *prometheus.Desc) {
	ch <- s.missed
	ch <- s.reconnects
}

func (s *socketStats) Collect(ch chan<- prometheus.Metric) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, sr := range s.conns {
		st := sr.Stats()
		ch <- prometheus.MustNewConstMetric(s.missed, prometheus.CounterValue, float64(st.MissedHeartbeats), name)
		ch <- prometheus.MustNewConstMetric(s.reconnects, prometheus.CounterValue, float64(st.Reconnects), name)
	}
}
