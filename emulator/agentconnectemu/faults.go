package agentconnectemu

import (
	"math"
	"net/http"
	"strconv"
	"time"
)

// routeFault answers the next n calls of one REST route with status, or
// hangs them up (status hangUp).
type routeFault struct {
	method, path string
	n, status    int
	retryAfter   time.Duration
}

const hangUp = -1

// FailRoute makes the next n calls of method on path (e.g. "POST",
// [CreatePath]) answer status with {"detail": ...} before they are
// executed; a retryAfter above zero adds a Retry-After header (whole
// seconds, rounded up). Faults apply in the order they were added, before
// the route's rate limit and token check.
func (s *Server) FailRoute(method, path string, n, status int, retryAfter time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.routeFaults = append(s.routeFaults, routeFault{method: method, path: path, n: n, status: status, retryAfter: retryAfter})
}

// HangUpRoute makes the next n calls of method on path end with the
// connection closed and no answer, after the request was read and before
// it is executed: a transport failure.
func (s *Server) HangUpRoute(method, path string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.routeFaults = append(s.routeFaults, routeFault{method: method, path: path, n: n, status: hangUp})
}

// routeFaultLocked takes one use of the first fault matching r, if any.
func (s *Server) routeFaultLocked(r *http.Request) (routeFault, bool) {
	for i := range s.routeFaults {
		f := &s.routeFaults[i]
		if f.method != r.Method || f.path != r.URL.Path || f.n <= 0 {
			continue
		}
		f.n--
		out := *f
		if f.n == 0 {
			s.routeFaults = append(s.routeFaults[:i], s.routeFaults[i+1:]...)
		}
		return out, true
	}
	return routeFault{}, false
}

// applyRouteFault answers or hangs up a call hit by a route fault.
func applyRouteFault(w http.ResponseWriter, f routeFault) {
	if f.status == hangUp {
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				_ = conn.Close()
				return
			}
		}
		panic(http.ErrAbortHandler) // net/http closes the connection without an answer
	}
	if f.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(f.retryAfter.Seconds()))))
	}
	writeJSON(w, f.status, detail(http.StatusText(f.status)+" (emulator fault)"))
}

// Unwritten returns the frames queued for a session's sockets that are
// not written yet: once it is 0, every frame sent so far reached the
// network (a test may then cut the sockets without losing them).
func (s *Server) Unwritten(id string) int {
	s.mu.Lock()
	conns := s.connsLocked(id)
	s.mu.Unlock()
	n := 0
	for _, c := range conns {
		n += int(c.unwritten.Load())
	}
	return n
}
