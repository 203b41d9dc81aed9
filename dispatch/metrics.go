package dispatch

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	outcomes *prometheus.CounterVec
	latency  prometheus.Observer
}

func newMetrics(reg prometheus.Registerer, conn string) (*metrics, error) {
	outcomes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bridge_dispatch_total", Help: "Managed-dispatch events by outcome (dispatched, processed, failed, timeout, bad_reply, no_responders, not_sent, offloaded, dead_lettered, dead_letter_lost, duplicate: finished by an earlier run and skipped, reply_dropped: a worker's extra reply beyond what an attempt takes).",
		ConstLabels: prometheus.Labels{"connection": conn},
	}, []string{"outcome"})
	latency := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "bridge_dispatch_round_trip_seconds", Help: "From a work request to the worker's processed reply.",
		ConstLabels: prometheus.Labels{"connection": conn}, Buckets: prometheus.ExponentialBuckets(0.0002, 2, 18),
	})
	if reg != nil {
		for _, c := range []prometheus.Collector{outcomes, latency} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return &metrics{outcomes: outcomes, latency: latency}, nil
}

func (m *metrics) outcome(o string) { m.outcomes.WithLabelValues(o).Inc() }
