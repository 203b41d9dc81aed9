package polyaiemu

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// HandshakeRecord is one WebSocket upgrade attempt: Status is 101 when
// it succeeded, else the HTTP status of the refusal.
type HandshakeRecord struct {
	SessionID string
	Status    int
	Cursor    string // the raw cursor parameter, "" when absent
	Time      time.Time
}

// wsConn is one socket. Its goroutines are the reader (the HTTP handler
// that upgraded) and a writer started only while frames are queued, so
// an idle socket costs one goroutine and no timer.
type wsConn struct {
	s    *Server
	sess *session // fixed at creation

	qmu     sync.Mutex
	ws      *websocket.Conn // nil until the handshake completes (guarded by qmu)
	queue   []outFrame
	writing bool // a writer goroutine is running
	closing bool // no more frames are accepted
}

type outFrame struct {
	data   []byte
	close  bool // a close handshake with code and reason
	drop   bool // close the connection without a close frame
	code   websocket.StatusCode
	reason string
}

// parseCursor reads the cursor parameter (polyai.md §4.1): "" or a
// non-negative integer, optionally prefixed "seq:".
func parseCursor(v string) (int64, bool) {
	if v == "" {
		return 0, true
	}
	n, err := strconv.ParseInt(strings.TrimPrefix(v, "seq:"), 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

// handleSocket checks and upgrades GET /ws (polyai.md §4.2), replays the
// history and runs the reader until the socket closes.
func (s *Server) handleSocket(w http.ResponseWriter, r *http.Request) {
	s.dials.Add(time.Now())
	q := r.URL.Query()
	sid, token, rawCursor := q.Get("session_id"), q.Get("access_token"), q.Get("cursor")
	cursor, cursorOK := parseCursor(rawCursor)

	s.mu.Lock()
	refuse := func(status int, message string, retryAfter time.Duration) {
		s.recordHandshakeLocked(sid, status, rawCursor)
		s.mu.Unlock()
		if retryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(retrySeconds(retryAfter)))
		}
		writeError(w, status, message)
	}
	sess := s.sessions[sid]
	if sess != nil {
		sess.handshakes++
	}
	if s.closed {
		refuse(http.StatusServiceUnavailable, "emulator is shutting down", 0)
		return
	}
	if status, after, ok := s.takeUpgradeFaultLocked(); ok {
		refuse(status, strings.ToLower(http.StatusText(status)), after)
		return
	}
	switch {
	case sid == "" || token == "":
		refuse(http.StatusBadRequest, "invalid connection parameters", 0)
		return
	case sess == nil || sess.ended:
		refuse(http.StatusNotFound, "session not found", 0)
		return
	case token != sess.token || !s.validTokenLocked(token):
		refuse(http.StatusUnauthorized, "authentication failed", 0)
		return
	case !cursorOK && s.opts.StrictCursor:
		refuse(http.StatusBadRequest, "invalid cursor: "+strconv.Quote(rawCursor), 0)
		return
	case len(sess.conns) >= s.opts.MaxSocketsPerSession:
		refuse(http.StatusTooManyRequests, "connection limit exceeded for session", 0)
		return
	case !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") ||
		r.Header.Get("Sec-WebSocket-Version") != "13" || r.Header.Get("Sec-WebSocket-Key") == "":
		// Checked before registering, so Accept below is all but
		// certain to succeed and a plain GET takes no socket slot.
		refuse(http.StatusUpgradeRequired, "WebSocket (version 13) upgrade required", 0)
		return
	}
	if !cursorOK {
		s.log.Warn().Str("session_id", sid).Msg("unparsable cursor, replaying from 0")
	}
	// Register and queue the replay before the 101 goes out, so no live
	// event can come between the history and the socket.
	c := &wsConn{s: s, sess: sess}
	sess.conns = append(sess.conns, c)
	sess.connects++
	sess.lastActive = time.Now()
	if sess.firstOpen.IsZero() {
		sess.firstOpen = sess.lastActive
	}
	s.conns[c] = struct{}{}
	s.replayLocked(sess, c, cursor)
	s.recordHandshakeLocked(sid, http.StatusSwitchingProtocols, rawCursor)
	s.wg.Add(1) // under mu, so Close cannot be waiting on a zero count
	s.mu.Unlock()
	defer s.wg.Done()

	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		s.mu.Lock()
		s.detachLocked(c)
		s.mu.Unlock()
		s.log.Warn().Err(err).Str("session_id", sid).Msg("websocket accept failed")
		return
	}
	ws.SetReadLimit(int64(s.opts.MaxMessageSize))
	s.log.Debug().Str("session_id", sid).Msg("socket connected")
	c.attach(ws)
	c.readLoop()
}

func (s *Server) recordHandshakeLocked(sid string, status int, cursor string) {
	if len(s.handshakes) >= s.opts.MaxHandshakeLog {
		s.handshakes = append(s.handshakes[:0], s.handshakes[1:]...) // drop the oldest
	}
	s.handshakes = append(s.handshakes, HandshakeRecord{SessionID: sid, Status: status, Cursor: cursor, Time: time.Now()})
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
		if c.isClosing() {
			continue // drain until the close handshake ends
		}
		if typ != websocket.MessageText {
			c.shutdown(websocket.StatusUnsupportedData, "binary frames are not supported")
			continue
		}
		c.s.handleClientEvent(c, data)
	}
}

func (c *wsConn) cleanup() {
	c.closeNow()
	c.s.mu.Lock()
	c.s.detachLocked(c)
	c.s.mu.Unlock()
	c.s.log.Debug().Str("session_id", c.sess.id).Msg("socket closed")
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
	if f.close || f.drop {
		c.closing = true
	} else if len(c.queue) >= c.s.opts.WriteQueueSize {
		c.closing = true
		c.queue = nil
		c.s.log.Warn().Str("session_id", c.sess.id).Msg("socket write queue full, closing")
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
// empty or after a close or drop.
func (c *wsConn) writeLoop() {
	defer c.s.wg.Done()
	for {
		c.qmu.Lock()
		frames := c.queue
		c.queue = nil
		if len(frames) == 0 {
			c.writing = false
			c.qmu.Unlock()
			return
		}
		c.qmu.Unlock()
		for _, f := range frames {
			var err error
			switch {
			case f.close:
				_ = c.ws.Close(f.code, f.reason)
			case f.drop:
			default:
				ctx, cancel := context.WithTimeout(context.Background(), c.s.opts.WriteTimeout)
				err = c.ws.Write(ctx, websocket.MessageText, f.data)
				cancel()
			}
			if f.close || f.drop || err != nil {
				c.qmu.Lock()
				c.closing, c.queue, c.writing = true, nil, false
				c.qmu.Unlock()
				_ = c.ws.CloseNow()
				return
			}
		}
	}
}
