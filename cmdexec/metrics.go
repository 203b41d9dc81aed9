package cmdexec

import (
	"errors"
	"sync"
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

// commandNames are the names x says it executes, nil when it does not say.
func commandNames(x connector.Executor) map[string]struct{} {
	n, ok := x.(connector.CommandNamer)
	if !ok {
		return nil
	}
	known := map[string]struct{}{}
	for _, c := range n.CommandNames() {
		known[c] = struct{}{}
	}
	return known
}

// metrics are one connection's command metrics. Every method is a no-op on
// a nil *metrics, so an Executor without a Registerer needs no checks.
type metrics struct {
	commands *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	inFlight prometheus.Gauge
	refused  *prometheus.CounterVec

	// known are the platform's command names (connector.CommandNamer): the
	// only label values when set. Without them, names are taken first come,
	// up to maxCommandLabels.
	known map[string]struct{}
	mu    sync.Mutex
	names map[string]struct{}
}

func newMetrics(reg prometheus.Registerer, platform, conn string, known map[string]struct{}) (*metrics, error) {
	labels := prometheus.Labels{"connection": conn, "platform": platform}
	m := &metrics{
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bridge_commands_total", ConstLabels: labels,
			Help: "Commands handled by outcome (ok, bad_request, failed, duplicate, rejected) and in-process retries (retried).",
		}, []string{"command", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "bridge_command_duration_seconds", ConstLabels: labels,
			Help:    "Duration of one attempt at a command against the platform.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}, []string{"command"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bridge_commands_in_flight", ConstLabels: labels,
			Help: "Command attempts running against the platform now.",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bridge_reply_refused_total", ConstLabels: labels,
			Help: "Reply destinations refused (a Bridge-Reply-To or RPC reply subject outside the connection's result namespace and inboxes), by path (result, rpc).",
		}, []string{"path"}),
		names: map[string]struct{}{},
		known: known,
	}
	var err error
	m.commands = register(reg, m.commands, &err)
	m.latency = register(reg, m.latency, &err)
	m.inFlight = register(reg, m.inFlight, &err)
	m.refused = register(reg, m.refused, &err)
	return m, err
}

// register registers c, or returns the collector already registered under
// the same description (a restarted executor of the same connection).
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
	m.names[command] = struct{}{}
	return command
}

func (m *metrics) outcome(command, outcome string) {
	if m == nil {
		return
	}
	m.commands.WithLabelValues(m.label(command), outcome).Inc()
}

func (m *metrics) replyRefused(path string) {
	if m == nil {
		return
	}
	m.refused.WithLabelValues(path).Inc()
}

// attempt counts one running attempt; call the result when it ends.
func (m *metrics) attempt(command string) func() {
	if m == nil {
		return func() {}
	}
	start := time.Now()
	m.inFlight.Inc()
	return func() {
		m.inFlight.Dec()
		m.latency.WithLabelValues(m.label(command)).Observe(time.Since(start).Seconds())
	}
}
