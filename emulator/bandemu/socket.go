package bandemu

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// wsConn is one agent socket. Its goroutines are the reader (the HTTP
// handler that upgraded) and a writer started only while frames are
// queued, so an idle socket costs one goroutine and one timer.
type wsConn struct {
	s       *Server
	agentID string
	idle    *time.Timer // nil when the idle timeout is disabled

	// joined maps a topic to its join_ref (raw JSON). Guarded by s.mu.
	joined map[string]string

	qmu     sync.Mutex
	ws      *websocket.Conn // nil until the handshake completes (guarded by qmu)
	queue   []outFrame
	writing bool // a writer goroutine is running
	closing bool // no more frames are accepted
}

type outFrame struct {
	data   []byte
	close  bool
	code   websocket.StatusCode
	reason string
}

// handleSocket authenticates and upgrades GET /api/v1/socket/websocket
// (band.md §3, §4), then runs the reader until the socket closes.
func (s *Server) handleSocket(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	s.dials.Add(start)
	agentID := ""
	rec := func(status int) {
		s.record(RequestRecord{Method: r.Method, Path: r.URL.Path, Status: status, AgentID: agentID,
			Time: start, Duration: time.Since(start)})
	}
	refuse := func(status int, code, message string, retryAfter time.Duration) {
		e := obj{"code": code, "message": message, "request_id": s.newRequestID()}
		if retryAfter > 0 {
			e["retry_after"] = retrySeconds(retryAfter)
			w.Header().Set("Retry-After", strconv.Itoa(retrySeconds(retryAfter)))
		}
		writeJSON(w, status, obj{"error": e})
		rec(status)
	}
	q := r.URL.Query()

	s.mu.Lock()
	closed := s.closed
	redirect, redirecting := s.takeRedirectLocked(true)
	rejStatus, rejAfter, rejecting := 0, time.Duration(0), false
	if !redirecting {
		rejStatus, rejAfter, rejecting = s.takeUpgradeFaultLocked()
	}
	key := r.Header.Get("x-api-key")
	if key == "" {
		key = q.Get("api_key")
	}
	a := s.keys[key]
	s.mu.Unlock()

	policy := q.Get("on_conflict")
	switch {
	case closed:
		refuse(http.StatusServiceUnavailable, "service_unavailable", "emulator is shutting down", 0)
		return
	case redirecting:
		http.Redirect(w, r, strings.TrimRight(redirect, "/")+r.URL.RequestURI(), http.StatusTemporaryRedirect)
		rec(http.StatusTemporaryRedirect)
		return
	case rejecting:
		code := codeForStatus(rejStatus)
		if rejStatus == http.StatusServiceUnavailable {
			code = "tracking_failed"
		}
		refuse(rejStatus, code, "upgrade refused by the emulator", rejAfter)
		return
	case q.Get("vsn") != "2.0.0":
		refuse(http.StatusForbidden, "forbidden", "vsn=2.0.0 is required", 0)
		return
	case a == nil:
		refuse(http.StatusForbidden, "forbidden", "invalid or missing API key", 0)
		return
	case q.Get("agent_id") != "" && q.Get("agent_id") != a.ID:
		refuse(http.StatusForbidden, "forbidden", "agent_id does not match the API key", 0)
		return
	case policy != "" && policy != "supersede" && policy != "reject":
		refuse(http.StatusBadRequest, "invalid_on_conflict", "on_conflict must be supersede or reject", 0)
		return
	case !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") ||
		r.Header.Get("Sec-WebSocket-Version") != "13" || r.Header.Get("Sec-WebSocket-Key") == "":
		// Checked before registering, so a plain GET cannot supersede
		// and Accept below is all but certain to succeed.
		refuse(http.StatusUpgradeRequired, "upgrade_required", "WebSocket (version 13) upgrade required", 0)
		return
	}
	agentID = a.ID

	// Register (and supersede the previous socket) before the 101 goes
	// out, so a client that sees its upgrade succeed can rely on it.
	c := &wsConn{s: s, agentID: a.ID, joined: map[string]string{}}
	s.mu.Lock()
	switch {
	case s.closed:
		s.mu.Unlock()
		refuse(http.StatusServiceUnavailable, "service_unavailable", "emulator is shutting down", 0)
		return
	case policy == "reject" && a.conn != nil:
		s.mu.Unlock()
		refuse(http.StatusConflict, "connection_conflict", "another connection holds this agent", 0)
		return
	}
	s.wg.Add(1) // under mu, so Close cannot be waiting on a zero count
	defer s.wg.Done()
	old := a.conn
	a.conn = c
	s.conns[c] = struct{}{}
	if old != nil {
		s.supersedeLocked(old)
	}
	s.mu.Unlock()
	rec(http.StatusSwitchingProtocols) // before the client can see it

	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		s.mu.Lock()
		s.detachLocked(c)
		s.mu.Unlock()
		s.log.Warn().Err(err).Str("agent_id", a.ID).Msg("websocket accept failed")
		return
	}
	ws.SetReadLimit(1 << 20)
	s.log.Debug().Str("agent_id", a.ID).Bool("superseded_previous", old != nil).Msg("socket connected")
	c.attach(ws)

	if d := s.opts.HeartbeatTimeout; d > 0 {
		c.idle = time.AfterFunc(d, func() {
			s.log.Debug().Str("agent_id", c.agentID).Msg("socket idle, closing")
			c.shutdown(websocket.StatusNormalClosure, "heartbeat timeout")
		})
	}
	c.readLoop()
}

// attach gives the upgraded connection to c and starts writing what
// was queued while the handshake was in flight.
func (c *wsConn) attach(ws *websocket.Conn) {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	c.ws = ws
	switch {
	case len(c.queue) > 0:
		c.writing = true
		c.s.wg.Add(1)
		go c.writeLoop()
	case c.closing: // dropped during the handshake
		_ = ws.CloseNow()
	}
}

// closeNow drops the connection without a close frame.
func (c *wsConn) closeNow() {
	c.qmu.Lock()
	c.closing = true
	c.queue = nil
	ws := c.ws
	c.qmu.Unlock()
	if ws != nil {
		_ = ws.CloseNow()
	}
}

func (c *wsConn) readLoop() {
	defer c.cleanup()
	for {
		typ, data, err := c.ws.Read(context.Background())
		if err != nil {
			return
		}
		if c.idle != nil {
			c.idle.Reset(c.s.opts.HeartbeatTimeout)
		}
		if c.isClosing() {
			continue // drain until the close handshake ends
		}
		if typ != websocket.MessageText {
			c.shutdown(websocket.StatusUnsupportedData, "binary frames are not supported")
			continue
		}
		c.handleFrame(data)
	}
}

func (c *wsConn) cleanup() {
	if c.idle != nil {
		c.idle.Stop()
	}
	c.closeNow()
	c.s.mu.Lock()
	c.s.detachLocked(c)
	c.s.mu.Unlock()
	c.s.log.Debug().Str("agent_id", c.agentID).Msg("socket closed")
}

func (c *wsConn) isClosing() bool {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	return c.closing
}

// enqueue queues one text frame. It never blocks; a socket whose queue
// is full is closed at once.
func (c *wsConn) enqueue(data []byte) { c.push(outFrame{data: data}) }

// shutdown queues a close handshake after the frames already queued;
// later frames are dropped.
func (c *wsConn) shutdown(code websocket.StatusCode, reason string) {
	c.push(outFrame{close: true, code: code, reason: reason})
}

func (c *wsConn) push(f outFrame) {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	if c.closing {
		return
	}
	if f.close {
		c.closing = true
	} else if len(c.queue) >= c.s.opts.WriteQueueSize {
		c.closing = true
		c.queue = nil
		c.s.log.Warn().Str("agent_id", c.agentID).Msg("socket write queue full, closing")
		if c.ws != nil {
			_ = c.ws.CloseNow() // unblocks the writer and the reader
		}
		return
	}
	c.queue = append(c.queue, f)
	if !c.writing && c.ws != nil { // before attach, attach starts the writer
		c.writing = true
		c.s.wg.Add(1) // under qmu: cleanup cannot have run yet
		go c.writeLoop()
	}
}

// writeLoop writes queued frames in order and exits when the queue is
// empty or after a close.
func (c *wsConn) writeLoop() {
	defer c.s.wg.Done()
	for {
		c.qmu.Lock()
		batch := c.queue
		c.queue = nil
		if len(batch) == 0 {
			c.writing = false
			c.qmu.Unlock()
			return
		}
		c.qmu.Unlock()
		for _, f := range batch {
			var err error
			if f.close {
				_ = c.ws.Close(f.code, f.reason)
			} else {
				ctx, cancel := context.WithTimeout(context.Background(), c.s.opts.WriteTimeout)
				err = c.ws.Write(ctx, websocket.MessageText, f.data)
				cancel()
			}
			if f.close || err != nil {
				c.qmu.Lock()
				c.closing, c.queue, c.writing = true, nil, false
				c.qmu.Unlock()
				_ = c.ws.CloseNow()
				return
			}
		}
	}
}

// detachLocked forgets c as its agent's live socket.
func (s *Server) detachLocked(c *wsConn) {
	if a := s.agents[c.agentID]; a != nil && a.conn == c {
		a.conn = nil
	}
	delete(s.conns, c)
}

func (s *Server) detachAllLocked() []*wsConn {
	out := make([]*wsConn, 0, len(s.conns))
	for c := range s.conns {
		out = append(out, c)
		s.detachLocked(c)
	}
	return out
}

// supersedeLocked pushes supersede on agent_control (with the channel's
// join_ref, or null when the client never joined it) and closes c with
// 1000 once the push is written.
func (s *Server) supersedeLocked(c *wsConn) {
	s.correlation++
	payload := mustJSON(obj{
		"reason":           "session.already_connected",
		"message":          "This connection has been superseded by a newer session for this agent.",
		"retryable":        false,
		"target_socket_id": "agent_socket:" + c.agentID,
		"correlation_id":   "evict-" + strconv.FormatUint(s.correlation, 10),
	})
	topic := "agent_control:" + c.agentID
	joinRef, ok := c.joined[topic]
	if !ok {
		joinRef = "null"
	}
	c.enqueue(encodeFrame(joinRef, "null", topic, "supersede", payload))
	c.shutdown(websocket.StatusNormalClosure, "superseded")
	s.detachLocked(c)
	s.log.Info().Str("agent_id", c.agentID).Msg("socket superseded")
}
