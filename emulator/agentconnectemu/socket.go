package agentconnectemu

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// conn is one chat socket. Its goroutines are the reader (the upgraded
// HTTP handler) and the writer, which also sends the JSON pings.
type conn struct {
	s    *Server
	sess *session
	n    int // socket number within the session, from 1

	ctx    context.Context // cancelled when the socket is dropped or ends
	cancel context.CancelFunc
	out    chan outFrame

	mu      sync.Mutex
	ws      *websocket.Conn // nil until accepted
	closing bool            // a close is queued or done: drop new frames
	// unwritten counts data frames queued and not yet written.
	unwritten atomic.Int64
}

type outFrame struct {
	data   []byte
	close  bool
	code   websocket.StatusCode
	reason string
}

// handleSocket is GET /api/chat/ws/{session_id} (§4.1): every check
// runs before the upgrade, so a failure is an HTTP 403, as uvicorn
// answers a close before accept.
func (s *Server) handleSocket(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	token := r.URL.Query().Get("token")
	if token == "" {
		token, _ = bearer(r)
	}
	now := time.Now()

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		writeJSON(w, http.StatusServiceUnavailable, detail("emulator is shutting down"))
		return
	}
	code, why := websocket.StatusCode(0), ""
	sess := s.sessions[id]
	switch {
	case s.rejectShakes > 0:
		s.rejectShakes--
		code, why = 4003, "handshake refused by the emulator"
	case token == "":
		code, why = 4003, "Authentication failed"
	default:
		cl, err := s.verifyLocked(token, now)
		switch {
		case err != nil:
			code, why = 4003, "Authentication failed"
		case sess == nil || !sess.live():
			code, why = 4003, "Invalid session"
		case sess.dataMissing:
			code, why = 4004, "Session data missing"
		case sess.owner != cl.Sub:
			code, why = 4003, "Not authorized for this session"
		case len(sess.conns) >= s.opts.MaxSocketsPerSession:
			code, why = 4003, "too many sockets for this session (emulator bound)"
		}
	}
	if code == 0 && !isUpgrade(r) {
		s.mu.Unlock()
		writeJSON(w, http.StatusUpgradeRequired, detail("WebSocket upgrade required"))
		return
	}
	s.wg.Add(1) // under mu with closed false: Close waits for this handler
	defer s.wg.Done()
	if code != 0 {
		s.mu.Unlock()
		s.refuse(w, r, code, why)
		return
	}
	// Not derived from s.ctx: Close ends sockets with a close handshake.
	ctx, cancel := context.WithCancel(context.Background())
	sess.sockSeq++
	c := &conn{s: s, sess: sess, n: sess.sockSeq, ctx: ctx, cancel: cancel,
		out: make(chan outFrame, s.opts.WriteQueueSize)}
	sess.conns[c] = struct{}{}
	s.mu.Unlock()

	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		c.cleanup()
		s.log.Warn().Err(err).Msg("websocket accept failed")
		return
	}
	ws.SetReadLimit(maxFrameSize)
	c.mu.Lock()
	c.ws = ws
	c.mu.Unlock()
	s.log.Debug().Str("session_id", id).Int("socket", c.n).Msg("socket connected")
	s.wg.Add(1)
	go c.writeLoop()
	c.readLoop()
}

func isUpgrade(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket") &&
		r.Header.Get("Sec-WebSocket-Version") == "13" && r.Header.Get("Sec-WebSocket-Key") != ""
}

// refuse fails a handshake: HTTP 403 with an empty body, or with
// Options.AcceptThenClose an accepted socket closed with code.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, code websocket.StatusCode, why string) {
	s.log.Debug().Int("code", int(code)).Str("why", why).Msg("handshake refused")
	if !s.opts.AcceptThenClose || !isUpgrade(r) {
		w.WriteHeader(http.StatusForbidden)
		return
	}
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.opts.WriteTimeout)
	defer cancel()
	s.wg.Add(1) // the handler holds one too: Close cannot be past Wait
	go func() { // ends when refuse returns or the timeout passes
		defer s.wg.Done()
		<-ctx.Done()
		_ = ws.CloseNow()
	}()
	_ = ws.Close(code, why)
}

func (c *conn) readLoop() {
	defer c.cleanup()
	for {
		typ, data, err := c.ws.Read(c.ctx)
		if err != nil {
			return
		}
		if c.isClosing() {
			continue // drain until the close handshake ends
		}
		if typ != websocket.MessageText {
			c.enqueue(Frame{Type: "error", Content: "WebSocket error: binary frames are not supported",
				Timestamp: isoTime(time.Now())}.encode())
			c.shutdown(4000, "binary frame")
			continue
		}
		c.s.handleFrame(c, data)
	}
}

// cleanup forgets the socket and stops its writer.
func (c *conn) cleanup() {
	c.closeNow()
	c.s.mu.Lock()
	delete(c.sess.conns, c)
	c.s.mu.Unlock()
	c.s.log.Debug().Str("session_id", c.sess.id).Int("socket", c.n).Msg("socket closed")
}

func (c *conn) isClosing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closing
}

// closeNow drops the connection without a close frame.
func (c *conn) closeNow() {
	c.mu.Lock()
	c.closing = true
	ws := c.ws
	c.mu.Unlock()
	c.cancel()
	if ws != nil {
		_ = ws.CloseNow()
	}
}

// enqueue queues one text frame without blocking; a socket whose queue
// is full is dropped as too slow.
func (c *conn) enqueue(data []byte) { c.push(outFrame{data: data}) }

// shutdown queues a close handshake after the frames already queued.
func (c *conn) shutdown(code websocket.StatusCode, reason string) {
	c.push(outFrame{close: true, code: code, reason: reason})
}

func (c *conn) push(f outFrame) {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return
	}
	c.closing = f.close
	select {
	case c.out <- f:
		if !f.close {
			c.unwritten.Add(1)
		}
		c.mu.Unlock()
	default:
		c.mu.Unlock()
		c.s.log.Warn().Str("session_id", c.sess.id).Int("socket", c.n).Msg("socket write queue full, dropping it")
		c.closeNow()
	}
}

// writeLoop writes queued frames in order and a JSON ping every
// PingInterval; each ping refreshes the session's last activity (§4.4).
func (c *conn) writeLoop() {
	defer c.s.wg.Done()
	var tick <-chan time.Time
	if d := c.s.opts.PingInterval; d > 0 {
		t := time.NewTicker(d)
		defer t.Stop()
		tick = t.C
	}
	for {
		var data []byte
		ping := false
		select {
		case <-c.ctx.Done():
			return
		case f := <-c.out:
			if f.close {
				_ = c.ws.Close(f.code, f.reason)
				c.closeNow()
				return
			}
			data = f.data
		case now := <-tick:
			if c.s.stallPings.Load() {
				continue
			}
			c.s.mu.Lock()
			c.sess.lastActivity = now
			c.s.mu.Unlock()
			data, ping = []byte(`{"type":"ping","timestamp":"`+isoTime(now)+`"}`), true
		}
		ctx, cancel := context.WithTimeout(c.ctx, c.s.opts.WriteTimeout)
		err := c.ws.Write(ctx, websocket.MessageText, data)
		cancel()
		if !ping {
			c.unwritten.Add(-1)
		}
		if err != nil {
			c.closeNow()
			return
		}
	}
}
