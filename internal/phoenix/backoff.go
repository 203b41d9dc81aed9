package phoenix

import (
	"errors"
	"math/rand/v2"
	"time"

	"github.com/bridgeworks/bridge/retry"
)

// Backoff is the reconnect policy, modelled on the band Python client's
// ReconnectPolicy. A zero field means the default shown in its comment;
// every duration is a field so tests can shrink them. Backoff is
// configuration only: each Socket keeps its own counters.
//
// The delay after a failed dial or a lost connection is:
//
//   - Base × 2ⁿ capped at Max (retry.Policy), with equal jitter (half
//     fixed, half random), n counting attempts since the last stable
//     connection;
//   - after a rapid disconnect (the connection lived < RapidUptime) the
//     number of rapid disconnects within RapidWindow raises a floor: 1 →
//     at least RapidFirst, 2 → at least RapidSecond, 3 or more →
//     HoldDownBase + HoldDownStep per extra one (at most HoldDownMax) with
//     HoldDownJitter..100 % jitter;
//   - a connection that lived StableAfter or longer resets both counters.
//
// Unlike the Python client, a Socket never gives up after many rapid
// disconnects: a gateway must come back; it logs them loudly instead.
type Backoff struct {
	Base         time.Duration // default 500ms
	Max          time.Duration // default 30s
	StableAfter  time.Duration // default 60s: a connection this old resets the counters
	RapidUptime  time.Duration // default 5s: a connection younger than this is a rapid disconnect
	RapidWindow  time.Duration // default 60s: rapid disconnects older than this are forgotten
	RapidFirst   time.Duration // default 2s: floor after the 1st rapid disconnect
	RapidSecond  time.Duration // default 10s: floor after the 2nd
	HoldDownBase time.Duration // default 60s: hold-down after the 3rd
	HoldDownStep time.Duration // default 30s: added per rapid disconnect beyond the 3rd
	HoldDownMax  time.Duration // default 300s
	// HoldDownJitter is the low end of the hold-down jitter as a fraction
	// of the hold-down; default 0.25 (so 25–100 %).
	HoldDownJitter float64

	// Server-requested waits (see Classify).
	RestartMin  time.Duration // default 1s: close code 1012 (service restart) waits RestartMin..RestartMax
	RestartMax  time.Duration // default 5s
	TryLaterMin time.Duration // default 30s: close code 1013 (try again later) waits TryLaterMin..TryLaterMax
	TryLaterMax time.Duration // default 60s
	// Refused is the wait after an upgrade refused with 400, 401, 403 or
	// 409 (bad request, bad key, wrong agent, conflict); default 30s.
	Refused time.Duration
	// RetryAfterMax caps the wait a refused upgrade asks for
	// (UpgradeError.RetryAfter); default 5m. A longer ask is cut to it and
	// logged at warn level.
	RetryAfterMax time.Duration

	// Rand returns a float in [0,1); default math/rand/v2.Float64.
	Rand func() float64
	// Now is the clock for the rapid-disconnect window; default time.Now.
	Now func() time.Time
}

// DefaultBackoff returns the policy used when Options.Backoff is zero.
func DefaultBackoff() Backoff { return Backoff{}.withDefaults() }

func (b Backoff) withDefaults() Backoff {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&b.Base, 500*time.Millisecond)
	def(&b.Max, 30*time.Second)
	def(&b.StableAfter, 60*time.Second)
	def(&b.RapidUptime, 5*time.Second)
	def(&b.RapidWindow, 60*time.Second)
	def(&b.RapidFirst, 2*time.Second)
	def(&b.RapidSecond, 10*time.Second)
	def(&b.HoldDownBase, 60*time.Second)
	def(&b.HoldDownStep, 30*time.Second)
	def(&b.HoldDownMax, 300*time.Second)
	if b.HoldDownJitter <= 0 || b.HoldDownJitter > 1 {
		b.HoldDownJitter = 0.25
	}
	def(&b.RestartMin, time.Second)
	def(&b.RestartMax, 5*time.Second)
	def(&b.TryLaterMin, 30*time.Second)
	def(&b.TryLaterMax, 60*time.Second)
	def(&b.Refused, 30*time.Second)
	def(&b.RetryAfterMax, 5*time.Minute)
	if b.Rand == nil {
		b.Rand = rand.Float64
	}
	if b.Now == nil {
		b.Now = time.Now
	}
	return b
}

// between returns a duration uniformly in [lo, hi].
func (b Backoff) between(lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(b.Rand()*float64(hi-lo))
}

// reconnector is one run's backoff state, used by the goroutine carrying
// the run. b is the socket's policy (defaults applied), not a copy.
type reconnector struct {
	b       *Backoff
	attempt int
	rapid   []time.Time // times of rapid disconnects inside the window
}

// next returns the wait before the next dial. connected says whether the
// attempt that just ended opened a connection, and lived how long it did.
func (r *reconnector) next(connected bool, lived time.Duration) time.Duration {
	b := r.b
	now := b.Now()
	if connected {
		if lived >= b.StableAfter {
			r.attempt = 0
			r.rapid = r.rapid[:0]
		}
		if lived < b.RapidUptime {
			r.rapid = append(r.rapid, now)
		}
	}
	for len(r.rapid) > 0 && now.Sub(r.rapid[0]) > b.RapidWindow {
		r.rapid = r.rapid[1:]
	}

	// The exponential part is the bridge's one rule (package retry),
	// jittered below with b.Rand so tests can pin it.
	r.attempt++
	exp := retry.Policy{Initial: b.Base, Max: b.Max, Jitter: retry.NoJitter}.Delay(r.attempt)

	n := len(r.rapid)
	if n >= 3 {
		hold := b.HoldDownBase + b.HoldDownStep*time.Duration(n-3)
		hold = min(max(hold, exp), b.HoldDownMax)
		return b.between(time.Duration(float64(hold)*b.HoldDownJitter), hold)
	}
	d := b.between(exp/2, exp)
	switch n {
	case 1:
		d = max(d, b.RapidFirst)
	case 2:
		d = max(d, b.RapidSecond)
	}
	return d
}

// rapidCount reports the rapid disconnects currently inside the window.
func (r *reconnector) rapidCount() int { return len(r.rapid) }

// Classify says whether a connection-ending error should stop Run for
// good and the least time to wait before dialling again, using
// DefaultBackoff's durations:
//
//   - close code 1008 (policy violation): terminal;
//   - close code 1012 (service restart): at least 1s (1–5 s in Run);
//   - close code 1013 (try again later): at least 30s (30–60 s in Run);
//   - close codes 1000/1001 from the server (Phoenix drains with 1001) and
//     anything else: not terminal, plain backoff;
//   - upgrade refused with 429 or 503 (or any status carrying a
//     retry_after): not before UpgradeError.RetryAfter, at most
//     Backoff.RetryAfterMax (5m);
//   - upgrade refused with 400/401/403/409: not terminal (a gateway must
//     recover after a key fix) but at least Backoff.Refused (30s).
//
// Options.Terminal overrides the terminal verdict.
func Classify(err error) (terminal bool, minDelay time.Duration) {
	terminal, lo, _ := DefaultBackoff().classify(err)
	return terminal, lo
}

// classify is Classify with this policy's durations and the random range
// [lo, hi] the wait is drawn from.
func (b Backoff) classify(err error) (terminal bool, lo, hi time.Duration) {
	var ue *UpgradeError
	var ce *CloseError
	switch {
	case err == nil:
		return false, 0, 0
	case errors.As(err, &ue):
		asked := min(ue.RetryAfter, b.RetryAfterMax)
		switch ue.Status {
		case 400, 401, 403, 409:
			d := max(b.Refused, asked)
			return false, d, d
		}
		return false, asked, asked
	case errors.As(err, &ce):
		switch ce.Code {
		case 1008:
			return true, 0, 0
		case 1012:
			return false, b.RestartMin, b.RestartMax
		case 1013:
			return false, b.TryLaterMin, b.TryLaterMax
		}
	}
	return false, 0, 0
}
