package tick

import (
	"sync"
	"time"
)

// slots is how many ticks a period is cut into: an entry is called once
// per period, within a tick (period/slots) of its due time.
const slots = 32

// Wheel calls each registered entry once per period, the entries of a
// period spread over its slots in the order they were added. Make it with
// [New]; the zero Wheel is not usable.
type Wheel struct {
	period time.Duration

	mu      sync.Mutex
	buckets [slots][]*Entry
	cur     int         // the slot the next tick calls
	n       int         // entries registered
	timer   *time.Timer // nil until the first Add; stopped while n is 0
	armed   bool
}

// Ticker is what an entry calls: Tick runs on the wheel's timer goroutine
// and must not block. (An interface, not a func: the owner's pointer
// needs no closure of its own.)
type Ticker interface{ Tick() }

// Entry is one registration; embed it in what it calls back (its zero
// value is ready) and add it with [Wheel.Add]. An entry is on one wheel
// at a time.
type Entry struct {
	w   *Wheel
	t   Ticker
	idx int // its index in its bucket
	s   int // its bucket
}

// New returns a wheel calling each entry once every period.
func New(period time.Duration) *Wheel {
	return &Wheel{period: max(period, slots*time.Millisecond)}
}

// Period is the wheel's period.
func (w *Wheel) Period() time.Duration { return w.period }

// Add registers e to call t.Tick once per period from now on, the first
// call about one period from now. Adding a registered entry moves it.
// Add and Stop of one entry must not run at once (its owner serialises
// them).
func (w *Wheel) Add(e *Entry, t Ticker) {
	e.Stop()
	w.mu.Lock()
	defer w.mu.Unlock()
	// The slot just called: due again one whole period from now.
	s := (w.cur + slots - 1) % slots
	e.w, e.t, e.s, e.idx = w, t, s, len(w.buckets[s])
	w.buckets[s] = append(w.buckets[s], e)
	w.n++
	if !w.armed {
		w.armed = true
		if w.timer == nil {
			w.timer = time.AfterFunc(w.period/slots, w.tick)
		} else {
			w.timer.Reset(w.period / slots)
		}
	}
}

// Stop unregisters e: Tick is not called after Stop returns, unless the
// tick calling it had already begun (a Ticker checks whether its owner
// stopped). It reports whether e was registered.
func (e *Entry) Stop() bool {
	w := e.w
	if w == nil {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if e.w != w {
		return false
	}
	b := w.buckets[e.s]
	last := len(b) - 1
	b[e.idx] = b[last]
	b[e.idx].idx = e.idx
	b[last] = nil
	w.buckets[e.s] = b[:last]
	if last == 0 {
		w.buckets[e.s] = nil
	}
	e.w, e.t = nil, nil
	w.n--
	return true
}

// TickAll calls every registered entry now, on the caller's goroutine,
// besides their turns (a NATS reconnect, say, after which every owner has
// a look).
func (w *Wheel) TickAll() {
	w.mu.Lock()
	ts := make([]Ticker, 0, w.n)
	for _, b := range w.buckets {
		for _, e := range b {
			ts = append(ts, e.t)
		}
	}
	w.mu.Unlock()
	for _, t := range ts {
		t.Tick()
	}
}

// tick calls the current slot's entries and arms the next tick, or stops
// while no entry is registered.
func (w *Wheel) tick() {
	w.mu.Lock()
	b := w.buckets[w.cur]
	ts := make([]Ticker, len(b))
	for i, e := range b {
		ts[i] = e.t
	}
	w.cur = (w.cur + 1) % slots
	if w.n > 0 {
		w.timer.Reset(w.period / slots)
	} else {
		w.armed = false
	}
	w.mu.Unlock()
	for _, t := range ts {
		t.Tick()
	}
}
