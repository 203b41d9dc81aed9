package bridge

import (
	"maps"
	"sync"
	"time"
)

// State is a connection's lifecycle state as shown on /status and in metrics.
type State string

// Connection states.
const (
	StateStarting     State = "starting"
	StateConnecting   State = "connecting"
	StateConnected    State = "connected"
	StateReconnecting State = "reconnecting"
	StateSuperseded   State = "superseded"
	StateFailed       State = "failed"
	StateStopped      State = "stopped"
	StateDisabled     State = "disabled"
	StateStandby      State = "standby" // another replica holds the connection's lease
)

var allStates = []State{StateStarting, StateConnecting, StateConnected, StateReconnecting, StateSuperseded, StateFailed, StateStopped, StateDisabled, StateStandby}

// ConnStatus is one connection's entry on /status.
type ConnStatus struct {
	Name            string    `json:"name"`
	Platform        string    `json:"platform"`
	State           State     `json:"state"`
	Since           time.Time `json:"since"`
	LastError       string    `json:"last_error,omitempty"`
	LastErrorAt     time.Time `json:"last_error_at,omitzero"`
	Reconnects      uint64    `json:"reconnects"`
	EventsPublished uint64    `json:"events_published"`
	// LeaseHolder is the process holding the connection's lease as last
	// seen here ("owner/instance"); this process's own when it runs here.
	LeaseHolder string `json:"lease_holder,omitempty"`
	// NATSErrors are the JetStream failures keeping the connection from
	// working right now, by what failed ("lease", "publish"); each is
	// cleared by the next success. Any of them makes /readyz answer 503.
	NATSErrors map[string]string `json:"nats_errors,omitempty"`
}

// statusBoard holds every connection's status; the supervisors write it and
// the HTTP handlers and metrics read it.
type statusBoard struct {
	mu    sync.Mutex
	conns map[string]*ConnStatus
	order []string
	onSet func(name string, from, to State)
}

func newStatusBoard(onSet func(name string, from, to State)) *statusBoard {
	return &statusBoard{conns: map[string]*ConnStatus{}, onSet: onSet}
}

func (b *statusBoard) add(name, platform string, st State) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.conns[name] = &ConnStatus{Name: name, Platform: platform, State: st, Since: time.Now().UTC()}
	b.order = append(b.order, name)
	if b.onSet != nil {
		b.onSet(name, "", st)
	}
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
	from := c.State
	c.State, c.Since = st, time.Now().UTC()
	if st == StateReconnecting {
		c.Reconnects++
	}
	if b.onSet != nil {
		b.onSet(name, from, st)
	}
}

func (b *statusBoard) setHolder(name, holder string) {
	b.mu.Lock()
	if c := b.conns[name]; c != nil {
		c.LeaseHolder = holder
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

func (b *statusBoard) snapshot() []ConnStatus {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]ConnStatus, 0, len(b.order))
	for _, n := range b.order {
		c := *b.conns[n]
		c.NATSErrors = maps.Clone(c.NATSErrors)
		if len(c.NATSErrors) == 0 {
			c.NATSErrors = nil
		}
		out = append(out, c)
	}
	return out
}
