package connector

import (
	"fmt"
	"math"
	"net/http"
	"sync"
	"time"
)

// DefaultRetryAfterMax is the longest wait a platform may impose when a
// connection sets no retry_after_max: five minutes. That is longer than any
// rate-limit window the platforms are known to use (per minute) and as long
// as the socket's own longest hold-down, so a sane Retry-After is obeyed in
// full, while a bogus or hostile one ("Retry-After: 1000000000") delays a
// connection by minutes, not years.
const DefaultRetryAfterMax = 5 * time.Minute

// CapWait returns the wait to honour for a platform's asked wait: asked, at
// most limit (DefaultRetryAfterMax when limit <= 0), never negative; capped
// says the platform asked for more.
func CapWait(asked, limit time.Duration) (wait time.Duration, capped bool) {
	if limit <= 0 {
		limit = DefaultRetryAfterMax
	}
	if asked <= 0 {
		return 0, false
	}
	if asked > limit {
		return limit, true
	}
	return asked, false
}

// Seconds converts a count of seconds (as in Retry-After) to a Duration,
// saturating instead of overflowing on absurd values; NaN and negative
// counts are 0.
func Seconds(s float64) time.Duration {
	if !(s > 0) {
		return 0
	}
	if s >= float64(math.MaxInt64)/float64(time.Second) {
		return math.MaxInt64
	}
	return time.Duration(s * float64(time.Second))
}

// Wait is a wait a platform imposed on a connection (a 429 or 503 with a
// Retry-After), as reported in [Stats] and shown on /status.
type Wait struct {
	Since time.Time     // when the platform asked
	Until time.Time     // when the connector calls it again (after the cap)
	Asked time.Duration // what the platform asked for, before the cap
	// Reason says what is waited on, e.g. "rate limited (429) on GET
	// /api/v1/agent/chats"; it never carries a secret or a payload.
	Reason string
}

// WaitReason describes a platform's refusal for [Wait.Reason]: "rate
// limited (429) on <route>", "unavailable (503) on <route>", or "refused
// (<status>) on <route>".
func WaitReason(status int, route string) string {
	what := "refused"
	switch {
	case status == http.StatusTooManyRequests:
		what = "rate limited"
	case status == http.StatusServiceUnavailable:
		what = "unavailable"
	}
	return fmt.Sprintf("%s (%d) on %s", what, status, route)
}

// WaitBoard keeps a connection's latest platform-imposed [Wait]; it is
// safe for concurrent use. The zero value is ready.
type WaitBoard struct {
	mu   sync.Mutex
	last Wait
}

// Record notes a wait that starts now; a wait ending sooner than one
// already recorded does not replace it until that one is over.
func (b *WaitBoard) Record(w Wait) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.last.Until.After(w.Since) || !w.Until.Before(b.last.Until) {
		b.last = w
	}
}

// Last returns the latest recorded wait (zero when there was none); its
// Until may be in the past.
func (b *WaitBoard) Last() Wait {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.last
}
