package dispatch

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the managed-dispatch metrics of every rule of a process: one
// set of vectors labelled by connection, made and registered once
// ([NewMetrics]) and shared through [Options.Metrics]. [Metrics.Forget]
// deletes a connection's series.
type Metrics struct {
	outcomes *prometheus.CounterVec   // connection, outcome
	latency  *prometheus.HistogramVec // connection
}

// NewMetrics makes the dispatch metrics and registers them on reg. When reg
// already has them (from an earlier NewMetrics), those are used.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bridge_dispatch_total", Help: "Managed-dispatch events by outcome (dispatched, processed, failed, timeout, bad_reply, no_responders, not_sent, offloaded, dead_lettered, dead_letter_lost, duplicate: finished by an earlier run and skipped, reply_dropped: a worker's extra reply beyond what an attempt takes).",
		}, []string{"connection", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "bridge_dispatch_round_trip_seconds", Help: "From a work request to the worker's processed reply.",
			Buckets: prometheus.ExponentialBuckets(0.0002, 2, 18),
		}, []string{"connection"}),
	}
	var errs error
	for _, c := range []prometheus.Collector{m.outcomes, m.latency} {
		err := reg.Register(c)
		var are prometheus.AlreadyRegisteredError
		switch {
		case err == nil:
		case errors.As(err, &are):
			switch old := are.ExistingCollector.(type) {
			case *prometheus.CounterVec:
				m.outcomes = old
			case *prometheus.HistogramVec:
				m.latency = old
			}
		default:
			errs = errors.Join(errs, err)
		}
	}
	return m, errs
}

// Forget deletes the series of connection conn (a connection a reload
// stopped).
func (m *Metrics) Forget(conn string) {
	l := prometheus.Labels{"connection": conn}
	m.outcomes.DeletePartialMatch(l)
	m.latency.DeletePartialMatch(l)
}

// metrics are one rule's view of the process's Metrics; its methods are
// no-ops on a nil *metrics (no Options.Metrics).
type metrics struct {
	*Metrics
	conn      string
	roundTrip prometheus.Observer // this connection's series, shown from the start
}

func newMetrics(shared *Metrics, conn string) *metrics {
	if shared == nil {
		return nil
	}
	return &metrics{Metrics: shared, conn: conn, roundTrip: shared.latency.WithLabelValues(conn)}
}

func (m *metrics) outcome(o string) {
	if m != nil {
		m.outcomes.WithLabelValues(m.conn, o).Inc()
	}
}

func (m *metrics) observeRoundTrip(seconds float64) {
	if m != nil {
		m.roundTrip.Observe(seconds)
	}
}
