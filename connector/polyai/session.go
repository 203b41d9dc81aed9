package polyai

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/retry"
	"github.com/bridgeworks/bridge/subjects"
)

// Socket limits.
const (
	dialTimeout      = 30 * time.Second
	writeTimeout     = 10 * time.Second
	maxInbound       = 32 << 20 // one frame (a history batch may be large)
	defaultHeartbeat = 30 * time.Second
	recentEchoes     = 8 // echoes remembered per session for re-executed commands
)

// errNotOpen is a write while the session has no open socket.
var errNotOpen = errors.New("polyai: the session's socket is not open")

// pend is an emitted sequence waiting for its acks.
type pend struct {
	seq    int64
	left   int // acks still due (a completing chunk also waits for the assembled message)
	failed bool
}

// echo is a client event the server echoed, kept for a command that
// is executed again.
type echo struct {
	cid string
	r   reply
}

// reply is the server's answer to a client event: its echo, or an error.
type reply struct {
	payload []byte
	seq     int64
	err     error
}

// session is one PolyAI session held by the connector. An idle session
// costs its socket, one reader goroutine and one heartbeat timer.
type session struct {
	c  *Connector
	id string

	mu       sync.Mutex
	rec      record
	dirty    bool  // rec changed since it was saved
	emitted  int64 // the highest sequence handed to Receive
	pending  []pend
	ws       *websocket.Conn // the open socket, nil while down
	isReady  bool            // ws is open and its replay began
	readyC   chan struct{}   // closed while isReady; made on demand
	gone     chan struct{}   // closed when the session ended or was replaced
	goneErr  error
	waiters  map[string]chan reply // by client_event_id
	echoes   [recentEchoes]echo
	echoAt   int
	asm      *assembly
	hb       *time.Timer
	hbEvery  time.Duration // advertised by SESSION_START; 0 unknown, <0 disabled
	lastRead time.Time
	joinSent bool // an automatic join went out on this socket
	// stalled is set while the reader waits for room in the queue to
	// Receive (back-pressure), stallEnd when such a wait last ended: a
	// late echo or heartbeat then says nothing about the platform.
	stalled  bool
	stallEnd time.Time
}

// stallGrace is how recently the reader must have been held back for a
// late echo or a silent socket to be blamed on the bridge, not PolyAI.
const stallGrace = 100 * time.Millisecond

// emit hands an event to Receive from the reader, noting back-pressure.
func (s *session) emit(rs *runState, ev connector.Event, ack connector.AckFunc) {
	if ack == nil {
		ack = func(context.Context, error) {}
	}
	select {
	case rs.out <- item{ev, ack}: // room in the queue: no stall
		return
	default:
	}
	s.mu.Lock()
	s.stalled = true
	s.mu.Unlock()
	rs.emit(ev, ack)
	s.mu.Lock()
	s.stalled, s.stallEnd = false, time.Now()
	s.mu.Unlock()
}

// heldBackLocked reports whether the reader is, or just was, held back
// by back-pressure; s.mu held.
func (s *session) heldBackLocked() bool {
	return s.stalled || time.Since(s.stallEnd) < stallGrace
}

func newSession(c *Connector, rec record) *session {
	return &session{c: c, id: rec.ID, rec: rec, gone: make(chan struct{})}
}

// resetRun prepares a session for a new Connect: everything up to the
// cursor is stored, the rest comes again from the replay.
func (s *session) resetRun() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.emitted, s.pending = s.rec.Cursor, nil
	if s.asm != nil {
		s.asm.timer.Stop()
		s.asm = nil // rebuilt from the replay (rec.AsmFrom)
	}
}

// isGone reports whether the session ended or was replaced; s.mu held.
func (s *session) isGone() bool { return s.goneErr != nil }

func (s *session) goneNow() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.isGone()
}

// markGone ends the session for commands (err is their answer) and
// closes its socket.
func (s *session) markGone(err error) {
	s.mu.Lock()
	if s.goneErr != nil {
		s.mu.Unlock()
		return
	}
	s.goneErr = err
	close(s.gone)
	s.mu.Unlock()
	s.stopSocket()
}

// stopSocket closes the socket and stops the session's timers.
func (s *session) stopSocket() {
	s.mu.Lock()
	ws := s.ws
	if s.hb != nil {
		s.hb.Stop()
		s.hb = nil
	}
	if s.asm != nil {
		s.asm.timer.Stop()
	}
	s.mu.Unlock()
	if ws != nil {
		_ = ws.CloseNow()
	}
}

// readyCh returns a channel closed while the socket is open.
func (s *session) readyCh() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.readyC == nil {
		s.readyC = make(chan struct{})
		if s.isReady {
			close(s.readyC)
		}
	}
	return s.readyC
}

func (s *session) setReady(ws *websocket.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ws != ws || s.isReady {
		return
	}
	s.isReady = true
	if s.readyC != nil {
		close(s.readyC)
	}
}

// down forgets ws as the session's socket.
func (s *session) down(ws *websocket.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ws != ws {
		return
	}
	s.ws = nil
	s.rec.Seen, s.rec.Open, s.dirty = s.lastRead.UTC(), false, true
	if s.isReady {
		s.isReady, s.readyC = false, nil
	}
	if s.hb != nil {
		s.hb.Stop()
		s.hb = nil
	}
}

// loop keeps the session's socket open until the run ends or the
// session ends: it dials with the cursor (each dial, redials included,
// paced by the process's dial limiter), reads, and redials with
// backoff. A refused handshake (401, or 404 once the session may have
// idled out) or a 4001 close replaces the session; a 404 sooner ends it.
func (s *session) loop(rs *runState) {
	ctx := rs.ctx
	bo := s.c.policy.Start()
	opened := false
	for ctx.Err() == nil && !s.goneNow() {
		if s.c.dials.Wait(ctx) != nil {
			return // the run ended
		}
		ws, status, asked, err := s.dial(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			switch {
			case status == http.StatusNotFound && !s.mayHaveExpired():
				// Too recently alive to have idled out: the platform
				// ended it (its SESSION_END went to no socket of ours).
				s.c.log.Info().Str("session_id", s.id).Msg("polyai: handshake refused (404) for a session alive within the idle lifetime; it ended")
				rs.lifecycle(connector.Event{Lifecycle: subjects.LifecycleSessionEnded, Room: s.id, Key: "ended-" + s.id},
					map[string]any{"reason": "handshake refused (404): the platform ended the session", "session_id": s.id})
				s.end(rs)
				return
			case status == http.StatusUnauthorized, status == http.StatusNotFound:
				s.c.replace(rs, s, fmt.Sprintf("handshake refused (%d)", status))
				return
			}
			wait := bo.Next()
			if asked > 0 {
				capped, _ := connector.CapWait(asked, s.c.cfg.RetryAfterMax)
				now := time.Now()
				s.c.waits.Record(connector.Wait{Since: now, Until: now.Add(capped), Asked: asked,
					Reason: connector.WaitReason(status, "socket upgrade")})
				wait = max(wait, capped)
			}
			s.c.log.Debug().Err(err).Str("session_id", s.id).Int64("retry_in_ms", wait.Milliseconds()).Msg("polyai: socket dial failed")
			if !retry.Sleep(ctx, wait) {
				return
			}
			continue
		}
		bo.Reset()
		if opened {
			s.c.reconnects.Add(1)
			rs.lifecycle(connector.Event{Lifecycle: subjects.LifecycleConnected, Room: s.id}, map[string]any{"reconnect": true, "session_id": s.id})
		}
		opened = true
		code, rerr := s.read(rs, ws)
		s.down(ws)
		_ = ws.CloseNow()
		if ctx.Err() != nil || s.goneNow() {
			return
		}
		if code == 4001 {
			s.c.replace(rs, s, "socket closed 4001 (session unknown)")
			return
		}
		rs.lifecycle(connector.Event{Lifecycle: subjects.LifecycleDisconnected, Room: s.id},
			map[string]any{"reason": s.redact(rerr), "session_id": s.id})
		if !retry.Sleep(ctx, bo.Next()) {
			return
		}
	}
}

// idleLifetime is how long PolyAI keeps a session without activity
// (polyai.md §3: about 10 minutes); a 404 sooner is not an expiry.
const idleLifetime = 10 * time.Minute

// mayHaveExpired reports whether the session's last sign of life (its
// last frame read in this process, else what the state store knew of it
// at Connect: see record.lastSign) is old enough for PolyAI to have
// dropped it for inactivity.
func (s *session) mayHaveExpired() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	last := s.lastRead
	if last.IsZero() {
		last = s.rec.lastSign(time.Time{})
	}
	return time.Since(last) >= idleLifetime
}

// redact returns err's text without the session's access token.
func (s *session) redact(err error) string {
	if err == nil {
		return "closed"
	}
	s.mu.Lock()
	tok := s.rec.Token
	s.mu.Unlock()
	msg := err.Error()
	if tok != "" {
		msg = strings.ReplaceAll(msg, tok, "REDACTED")
		msg = strings.ReplaceAll(msg, url.QueryEscape(tok), "REDACTED")
	}
	return msg
}

// dial opens the session's socket with its token and cursor. On a
// refused upgrade it returns the HTTP status and any Retry-After.
func (s *session) dial(ctx context.Context) (*websocket.Conn, int, time.Duration, error) {
	s.mu.Lock()
	cursor, tok := s.emitted, s.rec.Token
	if s.asm == nil && s.rec.AsmFrom > 0 && s.rec.AsmFrom <= cursor {
		cursor = s.rec.AsmFrom - 1 // replay the chunks of an unassembled reply
	}
	s.mu.Unlock()
	u, err := url.Parse(s.c.st.WSURL)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("polyai: ws_url: %w", err)
	}
	q := u.Query()
	q.Set("session_id", s.id)
	q.Set("access_token", tok)
	if cursor > 0 {
		q.Set("cursor", strconv.FormatInt(cursor, 10))
	}
	u.RawQuery = q.Encode()
	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	ws, resp, err := websocket.Dial(dctx, u.String(), &websocket.DialOptions{HTTPClient: s.c.dialer})
	if err != nil {
		status, asked := 0, time.Duration(0)
		if resp != nil {
			status = resp.StatusCode
			asked = connector.ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
			if resp.Body != nil {
				_ = resp.Body.Close()
			}
		}
		return nil, status, asked, fmt.Errorf("polyai: session %s: dial: %s", s.id, s.redact(err))
	}
	ws.SetReadLimit(maxInbound)
	return ws, 0, 0, nil
}

// read serves one open socket until it fails; it returns the close code
// (-1 without one) and the error.
func (s *session) read(rs *runState, ws *websocket.Conn) (websocket.StatusCode, error) {
	s.mu.Lock()
	if s.isGone() {
		s.mu.Unlock()
		return -1, errNotOpen
	}
	s.ws, s.lastRead, s.joinSent = ws, time.Now(), false
	s.rec.Seen, s.rec.Open, s.dirty = s.lastRead.UTC(), true, true
	s.scheduleHeartbeatLocked(true)
	s.mu.Unlock()
	first := true
	for {
		typ, data, err := ws.Read(rs.ctx)
		if err != nil {
			return websocket.CloseStatus(err), err
		}
		s.mu.Lock()
		s.lastRead = time.Now()
		s.mu.Unlock()
		if typ != websocket.MessageText {
			s.c.log.Warn().Str("session_id", s.id).Msg("polyai: binary frame ignored")
			continue
		}
		s.frame(rs, ws, data, &first)
	}
}

// heartbeatEvery is the heartbeat interval: the setting, else what
// SESSION_START advertised, else 30s; 0 means none. s.mu held.
func (s *session) heartbeatEveryLocked() time.Duration {
	switch {
	case s.c.st.HeartbeatInterval > 0:
		return s.c.st.HeartbeatInterval
	case s.hbEvery < 0:
		return 0
	case s.hbEvery > 0:
		return s.hbEvery
	}
	return defaultHeartbeat
}

// scheduleHeartbeatLocked (re)arms the heartbeat timer. The first one
// after a (re)connect comes at a random point of the interval, so the
// heartbeats of many sessions spread instead of firing together.
func (s *session) scheduleHeartbeatLocked(first bool) {
	every := s.heartbeatEveryLocked()
	if s.hb != nil {
		s.hb.Stop()
		s.hb = nil
	}
	if every <= 0 || s.ws == nil {
		return
	}
	d := every
	if first {
		d = every/10 + rand.N(every-every/10+1)
	}
	s.hb = time.AfterFunc(d, s.heartbeat)
}

// heartbeat sends one HEARTBEAT, or closes a socket that was silent for
// two intervals (its heartbeats went unanswered): the loop reconnects.
func (s *session) heartbeat() {
	s.mu.Lock()
	ws, every := s.ws, s.heartbeatEveryLocked()
	if ws == nil || s.hb == nil || every <= 0 {
		s.mu.Unlock()
		return
	}
	silent := time.Since(s.lastRead)
	if s.heldBackLocked() {
		silent = 0 // the reader, not the socket, was stuck
	}
	s.hb.Reset(every)
	s.mu.Unlock()
	if silent > 2*every {
		s.c.missedHB.Add(1)
		s.c.log.Info().Str("session_id", s.id).Int64("silent_ms", silent.Milliseconds()).Msg("polyai: heartbeats unanswered; reconnecting")
		_ = ws.CloseNow()
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), min(writeTimeout, every))
	defer cancel()
	if err := ws.Write(ctx, websocket.MessageText, []byte(`{"type":"EVENT_TYPE_HEARTBEAT","payload":{}}`)); err != nil {
		_ = ws.CloseNow()
	}
}

// write sends one frame on the open socket; a failed write closes it
// (the loop reconnects).
func (s *session) write(ctx context.Context, frame []byte) error {
	s.mu.Lock()
	ws := s.ws
	s.mu.Unlock()
	if ws == nil {
		return errNotOpen
	}
	wctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	if err := ws.Write(wctx, websocket.MessageText, frame); err != nil {
		s.down(ws)
		_ = ws.CloseNow()
		return fmt.Errorf("polyai: session %s: write: %w", s.id, err)
	}
	return nil
}

// settle records one ack of sequence seq and moves the cursor past every
// sequence whose acks all succeeded, in order.
func (s *session) settle(seq int64, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.pending {
		if s.pending[i].seq == seq {
			s.pending[i].left--
			s.pending[i].failed = s.pending[i].failed || !ok
			break
		}
	}
	n := 0
	for n < len(s.pending) && s.pending[n].left <= 0 && !s.pending[n].failed {
		s.rec.Cursor = s.pending[n].seq
		n++
	}
	if n > 0 {
		s.pending = append(s.pending[:0], s.pending[n:]...)
		s.dirty = true
	}
}
