package chatapiemu

import (
	"time"
)

// Fault knobs. Each changes how the emulator answers from the next
// request on; they are safe to call at any time.

type faultState struct {
	fails        []failRule
	streams      []streamRule
	delay        time.Duration
	stallRelease chan struct{} // closed and replaced by ReleaseStalls
}

// failRule fails the next n calls of method and path ("" matches any).
type failRule struct {
	method, path string
	n, status    int // status hangUp: close the connection, answer nothing
	retryAfter   time.Duration
}

// hangUp is the status of a [Server.HangUpRoute] rule.
const hangUp = -1

func (s *Server) takeFailLocked(method, path string) (status int, retryAfter time.Duration, ok bool) {
	for i := range s.faults.fails {
		f := &s.faults.fails[i]
		if f.n > 0 && (f.method == "" || f.method == method) && (f.path == "" || f.path == path) {
			f.n--
			return f.status, f.retryAfter, true
		}
	}
	return 0, 0, false
}

// FailNext makes the next n API calls (any route) fail with status
// (e.g. 429, 500, 503) and the body {"detail": "..."}, before
// authentication; retryAfter > 0 adds a Retry-After header in whole
// seconds (rounded up). The request still counts in ChatPosts and
// Requests. n <= 0 does nothing.
func (s *Server) FailNext(n, status int, retryAfter time.Duration) {
	s.FailRoute("", "", n, status, retryAfter)
}

// FailRoute is FailNext for one method and path only (the full path,
// e.g. "/api/agents/<id>/chat/stream"; the query is not compared). ""
// matches any method or path. Rules add up; the first one matching a
// call is spent.
func (s *Server) FailRoute(method, path string, n, status int, retryAfter time.Duration) {
	if n <= 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.fails = append(s.faults.fails, failRule{method: method, path: path, n: n, status: status, retryAfter: retryAfter})
}

// HangUpRoute makes the next n calls of method and path (as in
// FailRoute) end with the connection closed and no response, after the
// request was read and before it is executed.
func (s *Server) HangUpRoute(method, path string, n int) {
	s.FailRoute(method, path, n, hangUp, 0)
}

// ClearFaults cancels every FailNext, FailRoute, HangUpRoute and
// InjectStreamFault rule not yet spent, and the delay.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.fails, s.faults.streams, s.faults.delay = nil, nil, 0
}

// SetDelay delays every API response by d before it is executed
// (0 turns it off): a slow server.
func (s *Server) SetDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.delay = d
}

// SetRateLimit sets the per-key limit to n requests per window (n <= 0:
// unlimited; window <= 0: one minute) and refills every key's bucket.
// A limited request gets 429 with Retry-After and is not executed.
func (s *Server) SetRateLimit(n int, window time.Duration) {
	if window <= 0 {
		window = time.Minute
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rateLimit, s.rateWindow = n, window
	for _, k := range s.keys {
		k.last = time.Time{}
	}
}

// StreamFaultKind is what goes wrong in a stream.
type StreamFaultKind int

const (
	// StreamCut closes the connection without done or [DONE], as a
	// network failure would: the client sees an unexpected EOF.
	StreamCut StreamFaultKind = iota + 1
	// StreamStall stops sending (the connection stays open) until the
	// client goes away, [Server.ReleaseStalls] or Close.
	StreamStall
	// StreamError sends {"type":"error","content":Message} then
	// "data: [DONE]" and ends; no done chunk, no assistant turn.
	StreamError
)

// StreamFault is one fault injected into SSE streams.
type StreamFault struct {
	Kind StreamFaultKind
	// After is how many text chunks are sent before the fault.
	After int
	// Message is the content of an error chunk. Default: "An error
	// occurred while generating the response."
	Message string
	// Streams is how many streams it applies to. Default 1.
	Streams int
}

type streamRule struct {
	agentID string
	f       StreamFault
}

// InjectStreamFault applies f to the next f.Streams streams of agentID
// ("" = any agent). Rules queue up; the first one matching a stream is
// used.
func (s *Server) InjectStreamFault(agentID string, f StreamFault) {
	if f.Streams <= 0 {
		f.Streams = 1
	}
	if f.Message == "" {
		f.Message = "An error occurred while generating the response."
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.streams = append(s.faults.streams, streamRule{agentID: agentID, f: f})
}

func (s *Server) takeStreamFaultLocked(agentID string) (StreamFault, bool) {
	for i := range s.faults.streams {
		r := &s.faults.streams[i]
		if r.f.Streams > 0 && (r.agentID == "" || r.agentID == agentID) {
			r.f.Streams--
			return r.f, true
		}
	}
	return StreamFault{}, false
}

// ReleaseStalls lets every stalled stream go on (the rest of its
// fragments, done, [DONE]).
func (s *Server) ReleaseStalls() {
	s.mu.Lock()
	defer s.mu.Unlock()
	close(s.faults.stallRelease)
	s.faults.stallRelease = make(chan struct{})
}

// RevokeKey makes a key invalid (401 from then on). It reports whether
// the key existed.
func (s *Server) RevokeKey(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.keys[key]
	delete(s.keys, key)
	return ok
}
