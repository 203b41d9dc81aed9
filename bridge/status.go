package bridge

import (
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/bridgeworks/bridge/connector"
)

// State is a connection's lifecycle state as shown on /status and in metrics.
type State string

// Connection states.
const (
	StateStarting     State = "starting"
	StateConnecting   State = "connecting"
	StateConnected    State = "connected"
	StateReconnecting State = "reconnecting"
	StateSuperseded   State = "superseded" // another session took the identity; retried after supersede_cooloff
	StateRefused      State = "refused"    // the platform refused the credentials (401/403); retried with long waits
	StateFailed       State = "failed"     // an error a quick retry does not cure; retried with long waits
	StateStopped      State = "stopped"
	StateDisabled     State = "disabled"
	StateStandby      State = "standby" // another replica holds the connection's lease
)

// ConnStatus is one connection's entry on /status.
type ConnStatus struct {
	Name        string    `json:"name"`
	Platform    string    `json:"platform"`
	State       State     `json:"state"`
	Since       time.Time `json:"since"`
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	// RetryAt is when the supervisor tries to connect again while it waits
	// (reconnecting, superseded, refused, failed); zero otherwise.
	RetryAt         time.Time `json:"retry_at,omitzero"`
	Reconnects      uint64    `json:"reconnects"`
	EventsPublished uint64    `json:"events_published"`
	// WaitingUntil and WaitingReason are set while the connection waits
	// because the platform asked it to (a 429 or 503 with Retry-After),
	// e.g. "rate limited (429) on GET /api/v1/agent/chats".
	WaitingUntil  time.Time `json:"waiting_until,omitzero"`
	WaitingReason string    `json:"waiting_reason,omitempty"`
	// LeaseHolder is the process holding the connection's lease as last
	// seen here ("owner/instance"); this process's own when it runs here.
	LeaseHolder string `json:"lease_holder,omitempty"`
	// LeaseRevision and LeaseSince are the lease key's revision and when
	// this process took it, while it runs here.
	LeaseRevision uint64    `json:"lease_revision,omitempty"`
	LeaseSince    time.Time `json:"lease_since,omitzero"`
	// NATSErrors are the JetStream failures keeping the connection from
	// working right now, by what failed ("lease", "publish"); each is
	// cleared by the next success. Any of them makes /readyz answer 503.
	NATSErrors map[string]string `json:"nats_errors,omitempty"`
}

// statusEntry is what the board keeps of a connection: its ConnStatus
// but the name (the board's key) and the platform wait (added by
// snapshot). A ConnStatus kept per connection took 288 bytes, this 192.
type statusEntry struct {
	Platform        string
	State           State
	Since           time.Time
	LastError       string
	LastErrorAt     time.Time
	RetryAt         time.Time
	Reconnects      uint64
	EventsPublished uint64
	LeaseHolder     string
	LeaseRevision   uint64
	LeaseSince      time.Time
	NATSErrors      map[string]string
}

// status is e as /status shows it, for connection name.
func (e *statusEntry) status(name string) ConnStatus {
	return ConnStatus{Name: name, Platform: e.Platform, State: e.State, Since: e.Since,
		LastError: e.LastError, LastErrorAt: e.LastErrorAt, RetryAt: e.RetryAt,
		Reconnects: e.Reconnects, EventsPublished: e.EventsPublished,
		LeaseHolder: e.LeaseHolder, LeaseRevision: e.LeaseRevision, LeaseSince: e.LeaseSince,
		NATSErrors: e.NATSErrors}
}

// statusBoard holds every connection's status; the supervisors write it and
// the HTTP handlers and metrics read it.
type statusBoard struct {
	mu    sync.Mutex
	conns map[string]*statusEntry
	order []string
	onSet func(name, platform string, to State)
	waits map[string]connector.Wait          // the supervisors' own platform waits
	stats map[string]connector.StatsReporter // connectors reporting their platform waits
}

func newStatusBoard(onSet func(name, platform string, to State)) *statusBoard {
	return &statusBoard{conns: map[string]*statusEntry{}, onSet: onSet,
		waits: map[string]connector.Wait{}, stats: map[string]connector.StatsReporter{}}
}

// add enters a connection, or starts its entry afresh in its place (a
// connection restarted by a reload).
func (b *statusBoard) add(name, platform string, st State) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.conns[name] == nil {
		b.order = append(b.order, name)
	}
	b.conns[name] = &statusEntry{Platform: platform, State: st, Since: time.Now().UTC()}
	delete(b.waits, name)
	delete(b.stats, name)
	if b.onSet != nil {
		b.onSet(name, platform, st)
	}
}

// remove drops a connection a reload took out.
func (b *statusBoard) remove(name string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.conns, name)
	delete(b.waits, name)
	delete(b.stats, name)
	b.order = slices.DeleteFunc(b.order, func(n string) bool { return n == name })
}

// retryAt records when the supervisor tries again (zero: not waiting).
func (b *statusBoard) retryAt(name string, at time.Time) {
	b.mu.Lock()
	if c := b.conns[name]; c != nil {
		c.RetryAt = at.UTC()
		if at.IsZero() {
			c.RetryAt = time.Time{}
		}
	}
	b.mu.Unlock()
}

func (b *statusBoard) set(name string, st State, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	c := b.conns[name]
	if c == nil {
		return
	}
	if err != nil {
		c.LastError = err.Error()
		c.LastErrorAt = time.Now().UTC()
	}
	if c.State == st {
		return
	}
	c.State, c.Since = st, time.Now().UTC()
	if st == StateReconnecting {
		c.Reconnects++
	}
	if b.onSet != nil {
		b.onSet(name, c.Platform, st)
	}
}

// setHolder records the lease's holder, and its revision and since when
// held here (zero otherwise).
func (b *statusBoard) setHolder(name, holder string, rev uint64, since time.Time) {
	b.mu.Lock()
	if c := b.conns[name]; c != nil {
		c.LeaseHolder, c.LeaseRevision, c.LeaseSince = holder, rev, since
	}
	b.mu.Unlock()
}

// natsError records (err != nil) or clears (nil) what's failure.
func (b *statusBoard) natsError(name, what string, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	c := b.conns[name]
	switch {
	case c == nil:
	case err != nil:
		if c.NATSErrors == nil {
			c.NATSErrors = map[string]string{}
		}
		c.NATSErrors[what] = err.Error()
	case c.NATSErrors[what] != "":
		delete(c.NATSErrors, what)
	}
}

func (b *statusBoard) published(name string, n uint64) {
	b.mu.Lock()
	if c := b.conns[name]; c != nil {
		c.EventsPublished += n
	}
	b.mu.Unlock()
}

// watch makes /status show the platform waits sr reports for name.
func (b *statusBoard) watch(name string, sr connector.StatsReporter) {
	b.mu.Lock()
	b.stats[name] = sr
	b.mu.Unlock()
}

// wait records a platform wait of name's supervisor.
func (b *statusBoard) wait(name string, w connector.Wait) {
	b.mu.Lock()
	b.waits[name] = w
	b.mu.Unlock()
}

// snapshot returns every connection's status. A platform wait still running
// shows as waiting_until and waiting_reason, and one newer than the last
// error is the last error.
func (b *statusBoard) snapshot() []ConnStatus {
	b.mu.Lock()
	out := make([]ConnStatus, 0, len(b.order))
	waits := make([]connector.Wait, 0, len(b.order))
	var srs []connector.StatsReporter
	for _, n := range b.order {
		c := b.conns[n].status(n)
		c.NATSErrors = maps.Clone(c.NATSErrors)
		if len(c.NATSErrors) == 0 {
			c.NATSErrors = nil
		}
		out = append(out, c)
		waits = append(waits, b.waits[n])
		srs = append(srs, b.stats[n])
	}
	b.mu.Unlock()
	now := time.Now()
	for i := range out {
		w := waits[i]      // the supervisor's: its error is last_error already
		if srs[i] != nil { // outside the lock: Stats takes the connector's
			cw := srs[i].Stats().Wait
			if cw.Reason != "" && cw.Since.After(out[i].LastErrorAt) {
				out[i].LastError, out[i].LastErrorAt = cw.Reason, cw.Since.UTC()
			}
			if cw.Until.After(w.Until) {
				w = cw
			}
		}
		if w.Until.After(now) {
			out[i].WaitingUntil, out[i].WaitingReason = w.Until.UTC(), w.Reason
		}
	}
	return out
}
