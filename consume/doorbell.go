package consume

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bridgeworks/bridge/internal/tick"
)

// bell parks an engine's fetch loop while there is no work and starts it
// again when work may have come: a message on the doorbell subjects, a
// NakWithDelay the engine sent coming due, a NATS reconnect, or the slow
// safety timer. While parked the engine holds no goroutine and no pull is
// open on the server; every wake-up is a timer of the runtime's heap or a
// callback, never a waiting goroutine.
type bell struct {
	start func()        // runs the fetch loop; called on a goroutine of its own
	every time.Duration // the safety timer's period

	mu      sync.Mutex
	running bool        // the fetch loop's goroutine is running
	rung    bool        // a wake-up came while it ran: it must not park before another pull
	door    bool        // the doorbell rang since the last pull
	stopped bool        // shutdown: nothing starts any more
	safety  *time.Timer // the safety wake-up; nil with Options.IdleWheel
	idle    tick.Entry  // the safety wake-up on Options.IdleWheel
	naks    *time.Timer
	dues    []time.Time // when NakWithDelay'd messages come due, ascending
	loops   sync.WaitGroup

	// With Options.Release: the timer of the next release check, whether
	// it is armed, and whether it rang since the loop last looked.
	releaseAfter time.Duration
	release      *time.Timer
	releaseArmed bool
	releaseRung  bool
}

// dueStep rounds due times up, so naks sent close together share a wake-up.
const dueStep = 50 * time.Millisecond

// open subscribes to the doorbell subjects and arms the safety timer; the
// first ring is the caller's. On a subscribe error nothing stays open.
func (e *engine) openBell(ctx context.Context) (*bell, func(), error) {
	b := &bell{every: e.o.IdleWake}
	if e.sp.Release != nil {
		b.releaseAfter = e.sp.Release.After
	}
	b.start = func() { e.fetchLoop(ctx, b) }
	var subs []*nats.Subscription
	closeSubs := func() {
		for _, s := range subs {
			_ = e.o.Mux.Unsubscribe(s)
		}
	}
	for _, subj := range e.sp.Doorbell {
		// Runs on the Mux's goroutine: only rings.
		s, err := e.o.Mux.QueueSubscribe(e.o.NC, subj, "", func(*nats.Msg) { b.doorRing() })
		if err != nil {
			closeSubs()
			return nil, nil, err
		}
		subs = append(subs, s)
	}
	unrec := func() {}
	b.mu.Lock()
	if w := e.o.IdleWheel; w != nil {
		w.Add(&b.idle, b) // its owner's TickAll is the reconnect's ring
	} else {
		unrec = e.o.Mux.OnReconnect(b.ring)
		b.safety = time.AfterFunc(b.every, b.safetyRing)
	}
	b.mu.Unlock()
	return b, func() {
		unrec()
		closeSubs()
		b.stop()
	}, nil
}

// ring starts the fetch loop, or, when it runs, keeps it from parking
// before its next pull.
func (b *bell) ring() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopped {
		return
	}
	if b.running {
		b.rung = true
		return
	}
	b.running = true
	b.loops.Add(1)
	go func() { // owned: stop waits for b.loops
		defer b.loops.Done()
		b.start()
	}()
}

// doorRing is a ring of the doorbell itself: a message was published on
// the consumer's subjects (and may not be stored yet).
func (b *bell) doorRing() {
	b.mu.Lock()
	b.door = true
	b.mu.Unlock()
	b.ring()
}

// pulling is called by the fetch loop before each pull: the rings so far
// are answered by it. It reports whether the doorbell rang since the last
// pull.
func (b *bell) pulling() (door bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.rung = false
	door, b.door = b.door, false
	return door
}

// park is called by the fetch loop after a pull came back empty: true when
// it is to exit. A ring since the pull started keeps it running; one
// after park returned starts a new loop. With arm (the engine holds a
// consumer it may release) a parking loop arms the release check unless
// it is armed already.
func (b *bell) park(arm bool) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.rung {
		b.rung = false
		return false
	}
	b.running = false
	if arm && b.releaseAfter > 0 && !b.releaseArmed {
		b.armReleaseLocked(b.releaseAfter)
	}
	return true
}

// armRelease arms the release check to ring after d.
func (b *bell) armRelease(d time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.armReleaseLocked(d)
}

func (b *bell) armReleaseLocked(d time.Duration) {
	if b.stopped {
		return
	}
	b.releaseArmed = true
	if b.release == nil {
		b.release = time.AfterFunc(d, b.releaseRing)
		return
	}
	b.release.Reset(d)
}

// releaseRing runs on the release timer: the loop checks, at its next
// empty pull, whether the consumer can go.
func (b *bell) releaseRing() {
	b.mu.Lock()
	if b.stopped {
		b.mu.Unlock()
		return
	}
	b.releaseArmed, b.releaseRung = false, true
	b.mu.Unlock()
	b.ring()
}

// takeRelease reports whether the release timer rang since the last call.
func (b *bell) takeRelease() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	r := b.releaseRung
	b.releaseRung = false
	return r
}

// hasDues reports whether a handed-back message is still to come due.
func (b *bell) hasDues() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.dues) > 0
}

// nakAt records that a message handed back with NakWithDelay comes due at
// t, so the loop runs then even when nothing else wakes it.
func (b *bell) nakAt(t time.Time) {
	if r := t.Round(dueStep); r.Before(t) {
		t = r.Add(dueStep)
	} else {
		t = r
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopped {
		return
	}
	i, found := slices.BinarySearchFunc(b.dues, t, time.Time.Compare)
	if found {
		return
	}
	b.dues = slices.Insert(b.dues, i, t)
	if i == 0 {
		b.armLocked()
	}
}

func (b *bell) armLocked() {
	if len(b.dues) == 0 {
		return
	}
	d := time.Until(b.dues[0])
	if b.naks == nil {
		b.naks = time.AfterFunc(d, b.nakDue)
		return
	}
	b.naks.Reset(d)
}

// nakDue runs on the nak timer: forget the dues passed, arm the next,
// ring.
func (b *bell) nakDue() {
	b.mu.Lock()
	now := time.Now()
	n := 0
	for n < len(b.dues) && !b.dues[n].After(now) {
		n++
	}
	b.dues = slices.Delete(b.dues, 0, n)
	stopped := b.stopped
	if !stopped {
		b.armLocked()
	}
	b.mu.Unlock()
	if n > 0 && !stopped {
		b.ring()
	}
}

// safetyRing runs every IdleWake: a wake-up for anything the doorbell
// missed (a message stored late, a delivery after an ack timeout).
func (b *bell) safetyRing() {
	b.mu.Lock()
	if b.stopped {
		b.mu.Unlock()
		return
	}
	b.safety.Reset(b.every)
	b.mu.Unlock()
	b.ring()
}

// Tick is the safety wake-up on Options.IdleWheel, every IdleWake.
func (b *bell) Tick() { b.ring() }

// stop ends the wake-ups and waits for a running loop to finish its pull.
func (b *bell) stop() {
	b.mu.Lock()
	b.stopped = true
	if b.safety != nil {
		b.safety.Stop()
	}
	b.idle.Stop()
	if b.release != nil {
		b.release.Stop()
	}
	if b.naks != nil {
		b.naks.Stop()
	}
	b.mu.Unlock()
	b.loops.Wait()
}
