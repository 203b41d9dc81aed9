package cmdexec

import (
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bridgeworks/bridge/connector"
)

// Outcomes counted by bridge_commands_total.
const (
	outcomeOK         = "ok"
	outcomeBadRequest = "bad_request"
	outcomeFailed     = "failed"
	outcomeRetried    = "retried"   // one per in-process retry
	outcomeDuplicate  = "duplicate" // an executed id answered from the KV bucket
	outcomeRejected   = "rejected"  // an RPC refused because the pool was full
)

// maxCommandLabels bounds the command label's values of a platform that
// does not list its commands (connector.CommandNamer): command names come
// from workers, so an unbounded label would let a typo grow the registry.
const maxCommandLabels = 64

// otherCommand is the label of every command name the platform does not
// know.
const otherCommand = "other"

// Metrics are the command metrics of every executor of a process: one set
// of vectors, labelled by connection and platform, made and registered
// once ([NewMetrics]) and shared through [Options.Metrics]. A
// connection's series are created as it uses them and deleted by
// [Metrics.Forget].
type Metrics struct {
	commands *prometheus.CounterVec   // connection, platform, command, outcome
	latency  *prometheus.HistogramVec // connection, platform, command
	inFlight *inFlightGauges          // connection, platform
	refused  *prometheus.CounterVec   // connection, platform, path

	// nameSets are the command-name sets of the platforms' executors
	// (connector.CommandNamer), one per distinct list, shared by every
	// executor that names the same commands.
	setsMu   sync.Mutex
	nameSets map[string]map[string]struct{}
}

// knownNames are the names x says it executes, nil when it does not say.
func (m *Metrics) knownNames(x connector.Executor) map[string]struct{} {
	n, ok := x.(connector.CommandNamer)
	if !ok {
		return nil
	}
	names := n.CommandNames()
	key := strings.Join(names, "\x00")
	m.setsMu.Lock()
	defer m.setsMu.Unlock()
	if set, ok := m.nameSets[key]; ok {
		return set
	}
	set := make(map[string]struct{}, len(names))
	for _, c := range names {
		set[c] = struct{}{}
	}
	if m.nameSets == nil {
		m.nameSets = map[string]map[string]struct{}{}
	}
	m.nameSets[key] = set
	return set
}

// NewMetrics makes the command metrics and registers them on reg. When reg
// already has them (from an earlier NewMetrics), those are used.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	conn := []string{"connection", "platform"}
	m := &Metrics{
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bridge_commands_total",
			Help: "Commands handled by outcome (ok, bad_request, failed, duplicate, rejected) and in-process retries (retried).",
		}, append(conn, "command", "outcome")),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "bridge_command_duration_seconds",
			Help:    "Duration of one attempt at a command against the platform.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}, append(conn, "command")),
		inFlight: &inFlightGauges{desc: prometheus.NewDesc("bridge_commands_in_flight",
			"Command attempts running against the platform now.", conn, nil)},
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bridge_reply_refused_total",
			Help: "Reply destinations refused (a Bridge-Reply-To or RPC reply subject outside the connection's result namespace and inboxes), by path (result, rpc).",
		}, append(conn, "path")),
	}
	var err error
	m.commands = register(reg, m.commands, &err)
	m.latency = register(reg, m.latency, &err)
	m.inFlight = register(reg, m.inFlight, &err)
	m.refused = register(reg, m.refused, &err)
	return m, err
}

// Forget deletes the series of connection conn (a connection a reload
// stopped).
func (m *Metrics) Forget(conn string) {
	l := prometheus.Labels{"connection": conn}
	m.commands.DeletePartialMatch(l)
	m.latency.DeletePartialMatch(l)
	m.inFlight.forget(conn)
	m.refused.DeletePartialMatch(l)
}

// inFlightGauges is bridge_commands_in_flight: one counter per connection,
// read at scrape time. A GaugeVec child per connection (the gauge, its
// label pairs and its entry) cost every idle connection ~0.35 KiB.
type inFlightGauges struct {
	desc  *prometheus.Desc
	mu    sync.Mutex
	conns map[inFlightKey]*inFlightGauge
}

type inFlightKey struct{ conn, platform string }

// inFlightGauge is one connection's series.
type inFlightGauge struct{ n atomic.Int64 }

// gauge returns conn's series, made (at 0) on first use.
func (g *inFlightGauges) gauge(conn, platform string) *inFlightGauge {
	k := inFlightKey{conn, platform}
	g.mu.Lock()
	defer g.mu.Unlock()
	if c := g.conns[k]; c != nil {
		return c
	}
	if g.conns == nil {
		g.conns = map[inFlightKey]*inFlightGauge{}
	}
	c := &inFlightGauge{}
	g.conns[k] = c
	return c
}

func (g *inFlightGauges) forget(conn string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for k := range g.conns {
		if k.conn == conn {
			delete(g.conns, k)
		}
	}
}

// Describe implements prometheus.Collector.
func (g *inFlightGauges) Describe(ch chan<- *prometheus.Desc) { ch <- g.desc }

// Collect implements prometheus.Collector.
func (g *inFlightGauges) Collect(ch chan<- prometheus.Metric) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for k, c := range g.conns {
		ch <- prometheus.MustNewConstMetric(g.desc, prometheus.GaugeValue, float64(c.n.Load()), k.conn, k.platform)
	}
}

// register registers c, or returns the collector already registered under
// the same description.
func register[C prometheus.Collector](reg prometheus.Registerer, c C, errp *error) C {
	err := reg.Register(c)
	if err == nil {
		return c
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if old, ok := are.ExistingCollector.(C); ok {
			return old
		}
	}
	*errp = errors.Join(*errp, err)
	return c
}

// metrics are one connection's view of the process's Metrics. Every method
// is a no-op on a nil *metrics, so an Executor without Metrics needs no
// checks.
type metrics struct {
	*Metrics
	conn, platform string
	inFlight       *inFlightGauge // this connection's series, 0 from the start

	// known are the platform's command names (connector.CommandNamer),
	// shared with the other executors naming the same: the only label
	// values when set. Without them, names are taken first come, up to
	// maxCommandLabels.
	known map[string]struct{}
	mu    sync.Mutex
	names map[string]struct{}
}

func newMetrics(shared *Metrics, platform, conn string, x connector.Executor) *metrics {
	return &metrics{Metrics: shared, conn: conn, platform: platform, known: shared.knownNames(x),
		inFlight: shared.inFlight.gauge(conn, platform)}
}

func (m *metrics) label(command string) string {
	if m.known != nil {
		if _, ok := m.known[command]; ok {
			return command
		}
		return otherCommand
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.names[command]; ok {
		return command
	}
	if len(m.names) >= maxCommandLabels || len(command) > 64 {
		return otherCommand
	}
	if m.names == nil {
		m.names = map[string]struct{}{}
	}
	m.names[command] = struct{}{}
	return command
}

func (m *metrics) outcome(command, outcome string) {
	if m == nil {
		return
	}
	m.commands.WithLabelValues(m.conn, m.platform, m.label(command), outcome).Inc()
}

func (m *metrics) replyRefused(path string) {
	if m == nil {
		return
	}
	m.refused.WithLabelValues(m.conn, m.platform, path).Inc()
}

// attempt counts one running attempt; call the result when it ends.
func (m *metrics) attempt(command string) func() {
	if m == nil {
		return func() {}
	}
	start := time.Now()
	m.inFlight.n.Add(1)
	return func() {
		m.inFlight.n.Add(-1)
		m.latency.WithLabelValues(m.conn, m.platform, m.label(command)).Observe(time.Since(start).Seconds())
	}
}
