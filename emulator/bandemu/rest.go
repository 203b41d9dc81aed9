package bandemu

import (
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// routes registers the agent REST API (band.md §9).
func (s *Server) routes() {
	const chat = "/api/v1/agent/chats/{chat_id}"
	for pattern, h := range map[string]func(*call){
		"GET /api/v1/agent/me":                         s.getMe,
		"GET /api/v1/agent/peers":                      s.listPeers,
		"GET /api/v1/agent/chats":                      s.listChats,
		"POST /api/v1/agent/chats":                     s.createChat,
		"GET " + chat:                                  s.getChat,
		"PATCH " + chat:                                s.patchChat,
		"GET " + chat + "/messages":                    s.listMessages,
		"POST " + chat + "/messages":                   s.postMessage,
		"GET " + chat + "/messages/next":               s.nextMessage,
		"POST " + chat + "/messages/{id}/processing":   func(c *call) { s.markMessage(c, StatusProcessing) },
		"POST " + chat + "/messages/{id}/processed":    func(c *call) { s.markMessage(c, StatusProcessed) },
		"POST " + chat + "/messages/{id}/failed":       func(c *call) { s.markMessage(c, StatusFailed) },
		"POST " + chat + "/events":                     s.postEvent,
		"GET " + chat + "/participants":                s.listParticipants,
		"POST " + chat + "/participants":               s.addParticipant,
		"DELETE " + chat + "/participants/{id}":        s.removeParticipant,
		"GET " + chat + "/context":                     s.getContext,
		"POST " + chat + "/activity":                   s.postActivity,
		"GET /api/v1/agent/contacts":                   s.listContacts,
		"GET /api/v1/agent/contacts/requests":          s.listContactRequests,
		"POST /api/v1/agent/contacts/add":              s.addContact,
		"POST /api/v1/agent/contacts/remove":           s.removeContact,
		"POST /api/v1/agent/contacts/requests/respond": s.respondContactRequest,
		"/": func(c *call) { c.send(c.errorf(http.StatusNotFound, "not_found", "no such endpoint")) },
	} {
		s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) { s.serveAPI(w, r, h) })
	}
}

// call is one REST request after authentication.
type call struct {
	w       http.ResponseWriter
	r       *http.Request
	agentID string
	reqID   string
}

// reply is a response built under the lock and written after it.
type reply struct {
	status  int
	body    any // success body, already wrapped in {"data":...}
	code    string
	message string
	details map[string][]string
}

func ok(status int, data any) reply { return reply{status: status, body: obj{"data": data}} }

func list(data, metadata any) reply {
	return reply{status: http.StatusOK, body: obj{"data": data, "metadata": metadata}}
}

func (c *call) errorf(status int, code, message string) reply {
	return reply{status: status, code: code, message: message}
}

// invalid is a 422 with details keyed by JSON pointer.
func invalid(code, message, pointer, detail string) reply {
	d := map[string][]string{}
	if pointer != "" {
		d[pointer] = []string{detail}
	}
	return reply{status: http.StatusUnprocessableEntity, code: code, message: message, details: d}
}

func notFound(what string) reply {
	return reply{status: http.StatusNotFound, code: "not_found", message: what + " not found"}
}

func (c *call) send(rep reply) {
	if rep.code == "" {
		if rep.body == nil {
			c.w.WriteHeader(rep.status)
			return
		}
		writeJSON(c.w, rep.status, rep.body)
		return
	}
	e := obj{"code": rep.code, "message": rep.message, "request_id": c.reqID}
	if rep.details != nil {
		e["details"] = rep.details
	}
	writeJSON(c.w, rep.status, obj{"error": e})
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (s *Server) newRequestID() string {
	return "req-" + strconv.FormatUint(s.reqSeq.Add(1), 10)
}

// serveAPI runs the REST pipeline: record, shutdown check, injected
// delay, injected failure, authentication, handler.
func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request, h func(*call)) {
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w}
	c := &call{w: sw, r: r, reqID: s.newRequestID()}
	sw.Header().Set("X-Request-ID", c.reqID)
	defer func() {
		s.record(RequestRecord{Method: r.Method, Path: r.URL.Path, Status: sw.status, TraceParent: r.Header.Get("traceparent"),
			AgentID: c.agentID, Time: start, Duration: time.Since(start)})
	}()

	s.mu.Lock()
	closed, delay := s.closed, s.faults.restDelay
	s.mu.Unlock()
	if closed {
		c.send(c.errorf(http.StatusServiceUnavailable, "service_unavailable", "emulator is shutting down"))
		return
	}
	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		case <-s.ctx.Done():
			t.Stop()
			c.send(c.errorf(http.StatusServiceUnavailable, "service_unavailable", "emulator is shutting down"))
			return
		}
	}

	s.mu.Lock()
	redirect, redirecting := s.takeRedirectLocked(false)
	status, retryAfter, failing := 0, time.Duration(0), false
	if !redirecting {
		status, retryAfter, failing = s.takeRESTFaultLocked(r.Method, r.URL.Path)
	}
	a := s.keys[r.Header.Get("X-API-Key")]
	s.mu.Unlock()
	if redirecting {
		http.Redirect(sw, r, strings.TrimRight(redirect, "/")+r.URL.RequestURI(), http.StatusTemporaryRedirect)
		return
	}
	if failing && status == hangUp {
		panic(http.ErrAbortHandler) // net/http closes the connection without a response
	}
	if failing {
		setRetryAfter(sw, retryAfter)
		c.send(c.errorf(status, codeForStatus(status), "injected failure"))
		return
	}
	if a == nil {
		c.send(c.errorf(http.StatusUnauthorized, "unauthorized", "Invalid or missing API key"))
		return
	}
	c.agentID = a.ID
	h(c)
}

func setRetryAfter(w http.ResponseWriter, d time.Duration) {
	if d > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(retrySeconds(d)))
	}
}

func retrySeconds(d time.Duration) int { return int(math.Ceil(d.Seconds())) }

func codeForStatus(status int) string {
	switch status {
	case http.StatusTooManyRequests:
		return "too_many_requests"
	case http.StatusServiceUnavailable:
		return "service_unavailable"
	case http.StatusUnauthorized:
		return "unauthorized"
	case http.StatusForbidden:
		return "forbidden"
	case http.StatusNotFound:
		return "not_found"
	case http.StatusConflict:
		return "conflict"
	case http.StatusBadRequest:
		return "bad_request"
	}
	return "internal_error"
}

func (s *Server) record(rec RequestRecord) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.requests) >= s.opts.MaxRequestLog {
		n := copy(s.requests, s.requests[len(s.requests)/2:])
		clear(s.requests[n:])
		s.requests = s.requests[:n]
	}
	s.requests = append(s.requests, rec)
}

// locked runs f under the domain lock and writes its reply after
// releasing it.
func (s *Server) locked(c *call, f func() reply) {
	s.mu.Lock()
	rep := f()
	s.mu.Unlock()
	c.send(rep)
}

// decode reads a JSON object body into dst. An empty body leaves dst
// untouched. On failure it writes a 400 and returns false.
func (c *call) decode(dst any) bool {
	body, err := io.ReadAll(io.LimitReader(c.r.Body, 1<<20))
	if err == nil && len(body) > 0 {
		err = json.Unmarshal(body, dst)
	}
	if err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			c.send(invalid("validation_error", "invalid field type", "/"+typeErr.Field, "has the wrong type"))
			return false
		}
		c.send(c.errorf(http.StatusBadRequest, "bad_request", "malformed JSON body"))
		return false
	}
	return true
}

// pageParams reads page and page_size (1-based, size capped at 100).
func (c *call) pageParams(def int) (page, size int, rep *reply) {
	page, size = 1, def
	for _, p := range []struct {
		name string
		dst  *int
	}{{"page", &page}, {"page_size", &size}} {
		v := c.r.URL.Query().Get(p.name)
		if v == "" {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			r := invalid("validation_error", "invalid pagination", "/"+p.name, "must be a positive integer")
			return 0, 0, &r
		}
		*p.dst = n
	}
	return page, min(size, maxPageSize), nil
}

func pageMeta(page, size, total int) obj {
	return obj{"page": page, "page_size": size, "total_count": total,
		"total_pages": (total + size - 1) / size}
}

func pageOf[T any](items []T, page, size int) []T {
	from := min((page-1)*size, len(items))
	return items[from:min(from+size, len(items))]
}
