package bridge

import (
	"math"
	"slices"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// connSeries is one collector for the bridge's own series of every
// connection (state, lease, publishing), read at scrape time from a small
// record per connection. The Prometheus vectors it replaces kept a metric
// object with its label pairs for every series: about 3.5 KiB per idle
// connection, where this record is about 0.3 KiB. A series appears when it
// is first set, as a vector's did, and forget drops all of a connection's.
type connSeries struct {
	state, retryAt, leaseHeld, handovers, reconnects              *prometheus.Desc
	published, gapFilled, alreadyStored, publishErrors, offloaded *prometheus.Desc
	latency                                                       *prometheus.Desc

	mu    sync.RWMutex
	conns map[string]*connRecord
}

// Counters of a connRecord, by index.
const (
	cReconnects = iota
	cPublishedEvt
	cPublishedSys
	cGapFilled
	cAlreadyStored
	cPublishErrors
	cOffloaded
	cHandover // four: one per handoverEvents
	nCounters = cHandover + 4
)

// The bits of connRecord.has beyond the counters' (bit i is counter i).
const (
	hasRetryAt = 1 << (nCounters + iota)
	hasLeaseHeld
	hasState
)

// handoverEvents are the values of bridge_lease_handovers_total's event
// label, in counter order.
var handoverEvents = [...]string{"acquired", "released", "moved", "lost"}

// latencyBuckets are bridge_publish_latency_seconds' upper bounds.
var latencyBuckets = prometheus.ExponentialBuckets(0.0001, 2, nLatencyBuckets)

const nLatencyBuckets = 16

// connRecord is one connection's series.
type connRecord struct {
	has       atomic.Uint32 // which series exist: counter i is bit i, then the has* bits
	counters  [nCounters]atomic.Uint64
	retryAt   atomic.Uint64 // float64 bits
	leaseHeld atomic.Uint64 // float64 bits
	latency   atomic.Pointer[latencyHist]

	mu       sync.Mutex // guards platform and state
	platform string
	state    State
}

// latencyHist is a histogram over latencyBuckets: counts[i] counts the
// observations in bucket i alone (the last one is above every bound).
type latencyHist struct {
	counts [nLatencyBuckets + 1]atomic.Uint64
	sum    atomic.Uint64 // float64 bits
}

func newConnSeries() *connSeries {
	conn := []string{"connection"}
	// A histogram's options, for its name and help: the deploy checks read
	// the kind of every exported name from a prometheus *Opts literal or a
	// prometheus.NewDesc call.
	latency := prometheus.HistogramOpts{Name: "bridge_publish_latency_seconds", Help: "From an event's receipt from the connector to its JetStream PubAck."}
	return &connSeries{
		conns: map[string]*connRecord{},
		retryAt: prometheus.NewDesc("bridge_connection_retry_timestamp_seconds",
			"When the connection tries to connect again (Unix time) while it waits after a loss, a supersede or a refusal; 0 when not waiting.", conn, nil),
		handovers: prometheus.NewDesc("bridge_lease_handovers_total",
			"Lease changes of this process by connection and event: acquired, released (stopped here), moved (handed to the process it is assigned to), lost.", []string{"connection", "event"}, nil),
		leaseHeld:  prometheus.NewDesc("bridge_lease_held", "1 while this process holds the connection's lease (and runs it), 0 while another does or none.", conn, nil),
		state:      prometheus.NewDesc("bridge_connection_state", "1 for the connection's current state; the series of its other states are absent.", []string{"connection", "platform", "state"}, nil),
		reconnects: prometheus.NewDesc("bridge_connection_reconnects_total", "Sessions the supervisor restarted after a loss.", conn, nil),
		published:  prometheus.NewDesc("bridge_events_published_total", "Events stored in JetStream (kind evt or sys).", []string{"connection", "kind"}, nil),
		gapFilled:  prometheus.NewDesc("bridge_events_gap_filled_total", "Events found by catch-up after a (re)connect and published.", conn, nil),
		alreadyStored: prometheus.NewDesc("bridge_events_already_stored_total",
			"Events found by catch-up that an earlier run had stored: acknowledged, not stored again.", conn, nil),
		publishErrors: prometheus.NewDesc("bridge_publish_errors_total", "JetStream publish attempts that failed and were retried.", conn, nil),
		latency:       prometheus.NewDesc(latency.Name, latency.Help, conn, nil),
		offloaded: prometheus.NewDesc("bridge_events_offloaded_total",
			"Events larger than NATS max_payload whose data went to the payload bucket (published with a reference).", conn, nil),
	}
}

// record returns name's record, made on first use.
func (s *connSeries) record(name string) *connRecord {
	s.mu.RLock()
	r := s.conns[name]
	s.mu.RUnlock()
	if r != nil {
		return r
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if r = s.conns[name]; r == nil {
		r = &connRecord{}
		s.conns[name] = r
	}
	return r
}

// forget drops every series of name.
func (s *connSeries) forget(name string) {
	s.mu.Lock()
	delete(s.conns, name)
	s.mu.Unlock()
}

// inc adds one to counter c of name.
func (s *connSeries) inc(name string, c int) {
	r := s.record(name)
	r.counters[c].Add(1)
	r.has.Or(1 << c)
}

// set sets the gauge g (retryAt or leaseHeld) of name, marked by bit.
func (s *connSeries) set(name string, bit uint32, v float64) {
	r := s.record(name)
	g := &r.retryAt
	if bit == hasLeaseHeld {
		g = &r.leaseHeld
	}
	g.Store(math.Float64bits(v))
	r.has.Or(bit)
}

func (s *connSeries) setState(name, platform string, st State) {
	r := s.record(name)
	r.mu.Lock()
	r.platform, r.state = platform, st
	r.mu.Unlock()
	r.has.Or(hasState)
}

// observeLatency adds a publish latency of name, in seconds.
func (s *connSeries) observeLatency(name string, v float64) {
	r := s.record(name)
	h := r.latency.Load()
	if h == nil {
		r.latency.CompareAndSwap(nil, &latencyHist{})
		h = r.latency.Load()
	}
	// The first bound at or above v, as a Prometheus histogram finds it.
	h.counts[sort.SearchFloat64s(latencyBuckets, v)].Add(1)
	for {
		old := h.sum.Load()
		if h.sum.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			return
		}
	}
}

func (s *connSeries) handover(name, event string) {
	i := slices.Index(handoverEvents[:], event)
	if i < 0 {
		panic("bridge: unknown lease handover event " + event) // a programming error
	}
	s.inc(name, cHandover+i)
}

func (s *connSeries) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{s.state, s.retryAt, s.leaseHeld, s.handovers, s.reconnects,
		s.published, s.gapFilled, s.alreadyStored, s.publishErrors, s.offloaded, s.latency} {
		ch <- d
	}
}

func (s *connSeries) Collect(ch chan<- prometheus.Metric) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	counter := func(d *prometheus.Desc, r *connRecord, c int, labels ...string) {
		if r.has.Load()&(1<<c) != 0 {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(r.counters[c].Load()), labels...)
		}
	}
	for name, r := range s.conns {
		has := r.has.Load()
		if has&hasState != 0 {
			r.mu.Lock()
			platform, st := r.platform, r.state
			r.mu.Unlock()
			ch <- prometheus.MustNewConstMetric(s.state, prometheus.GaugeValue, 1, name, platform, string(st))
		}
		if has&hasRetryAt != 0 {
			ch <- prometheus.MustNewConstMetric(s.retryAt, prometheus.GaugeValue, math.Float64frombits(r.retryAt.Load()), name)
		}
		if has&hasLeaseHeld != 0 {
			ch <- prometheus.MustNewConstMetric(s.leaseHeld, prometheus.GaugeValue, math.Float64frombits(r.leaseHeld.Load()), name)
		}
		for i, ev := range handoverEvents {
			counter(s.handovers, r, cHandover+i, name, ev)
		}
		counter(s.reconnects, r, cReconnects, name)
		counter(s.published, r, cPublishedEvt, name, "evt")
		counter(s.published, r, cPublishedSys, name, "sys")
		counter(s.gapFilled, r, cGapFilled, name)
		counter(s.alreadyStored, r, cAlreadyStored, name)
		counter(s.publishErrors, r, cPublishErrors, name)
		counter(s.offloaded, r, cOffloaded, name)
		if h := r.latency.Load(); h != nil {
			ch <- h.metric(s.latency, name)
		}
	}
}

// metric is the histogram as a Prometheus metric: the bucket counts
// cumulative, the count their total (so the two always agree).
func (h *latencyHist) metric(d *prometheus.Desc, name string) prometheus.Metric {
	buckets := make(map[float64]uint64, len(latencyBuckets))
	var n uint64
	for i, ub := range latencyBuckets {
		n += h.counts[i].Load()
		buckets[ub] = n
	}
	n += h.counts[len(latencyBuckets)].Load()
	return prometheus.MustNewConstHistogram(d, n, math.Float64frombits(h.sum.Load()), buckets, name)
}
