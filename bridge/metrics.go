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
	reg      *prometheus.Registry
	conns    *connSeries       // every connection's own series
	cmd      *cmdexec.Metrics  // every connection's executor
	dispatch *dispatch.Metrics // every connection's dispatch rule
	sockets  *socketStats      // every connector's own counters
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
	m := &metrics{reg: prometheus.NewRegistry(), conns: newConnSeries(), sockets: newSocketStats()}
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "bridge_build_info", Help: "Always 1; the labels say which build runs.",
		ConstLabels: prometheus.Labels{"version": version, "go": runtime.Version()},
	})
	build.Set(1)
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.conns, m.sockets, build,
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
	m.conns.set(name, hasRetryAt, v)
}

func (m *metrics) setLeaseHeld(name string, held bool) {
	m.conns.set(name, hasLeaseHeld, b2f(held))
}

// handover counts a lease event (acquired, released, moved, lost) of name.
func (m *metrics) handover(name, event string) {
	m.conns.handover(name, event)
}

// forget drops the series of a connection a reload removed.
func (m *metrics) forget(name string) { m.conns.forget(name) }

// setState exports st as the one series of name: the series of its other
// states do not exist (ten series per connection were about 5 KiB of
// memory each, for series that only ever read 0).
func (m *metrics) setState(name, platform string, st State) { m.conns.setState(name, platform, st) }

// count adds one to counter c (cReconnects, cPublishedEvt, ...) of name.
func (m *metrics) count(name string, c int) { m.conns.inc(name, c) }

// publishLatency records a publish of name that took seconds.
func (m *metrics) publishLatency(name string, seconds float64) { m.conns.observeLatency(name, seconds) }

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
