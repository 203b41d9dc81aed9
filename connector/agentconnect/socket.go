package agentconnect

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/rs/zerolog"

	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/retry"
	"github.com/bridgeworks/bridge/subjects"
)

// Bounds of one socket.
const (
	dialTimeout  = 15 * time.Second
	writeTimeout = 10 * time.Second
	readLimit    = 4 << 20
	maxSeen      = 4096 // frame hashes remembered per session for FrameKey
)

// sock is one session's socket. It redials by itself (reporting
// gap_possible after each redial: the platform replays nothing), reads
// frames into events, and carries send_message, one at a time.
type sock struct {
	h      *hub
	c      *Connector
	rec    sessionRec
	log    zerolog.Logger
	ctx    context.Context // ended by finish or the hub's stop
	cancel context.CancelFunc
	sendMu chan struct{} // one send_message at a time (a 1-slot semaphore)
	fresh  bool          // created in this run: its first open is no reconnect

	mu        sync.Mutex
	ws        *websocket.Conn // nil while down
	opened    chan struct{}   // closed when ws is set; replaced when it is lost
	pending   *pending        // the send_message waiting for its answer
	slowOwed  int             // cooldowns on this socket whose slow notice has not come yet
	ended     error           // the platform ended the session
	convEnded error           // the AI ended the conversation (stop)
	timer     *time.Timer     // finish's grace

	seen map[[32]byte]int // reader only: occurrences per frame hash
}

// pending is a sent message waiting for the frame that answers it.
type pending struct{ done chan result }

type result struct {
	resp connector.Response
	err  error
}

func newSock(h *hub, r sessionRec) *sock {
	ctx, cancel := context.WithCancel(h.ctx)
	return &sock{h: h, c: h.c, rec: r, log: h.c.log.With().Str("session_id", r.ID).Logger(), ctx: ctx, cancel: cancel,
		sendMu: make(chan struct{}, 1), opened: make(chan struct{}), seen: map[[32]byte]int{}}
}

// finish ends the socket after grace (at once for 0).
func (s *sock) finish(grace time.Duration) {
	if grace <= 0 {
		s.cancel()
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.timer == nil {
		s.timer = time.AfterFunc(grace, s.cancel)
	}
}

// handshakeError is a refused upgrade.
type handshakeError struct {
	status     int
	retryAfter time.Duration
}

func (e *handshakeError) Error() string {
	if e.status == http.StatusForbidden {
		return "handshake refused (HTTP 403): the token was refused, the session is unknown or ended, or it belongs to another user"
	}
	return fmt.Sprintf("handshake refused (HTTP %d)", e.status)
}

// run keeps the socket open until the session ends or the hub stops.
func (s *sock) run() {
	defer s.h.gone(s)
	defer func() {
		s.mu.Lock()
		if s.timer != nil {
			s.timer.Stop()
		}
		s.mu.Unlock()
		s.cancel()
	}()
	bo := s.c.cfg.Reconnect.Start()
	opens, refused := 0, 0
	lostAt, lost := time.Time{}, "bridge restarted or reconnected"
	for s.ctx.Err() == nil {
		ws, err := s.dial()
		if err != nil {
			if s.ctx.Err() != nil {
				return
			}
			wait := bo.Next()
			var he *handshakeError
			if errors.As(err, &he) {
				if he.status == http.StatusForbidden {
					refused++
					if s.refused(refused) {
						return
					}
				}
				if he.retryAfter > 0 {
					w, _ := connector.CapWait(he.retryAfter, s.c.cfg.RetryAfterMax)
					wait = max(wait, w)
				}
			}
			s.log.Warn().Err(err).Int64("retry_in_ms", wait.Milliseconds()).Msg("session socket did not open")
			if !retry.Sleep(s.ctx, wait) {
				return
			}
			continue
		}
		bo.Reset()
		refused = 0
		opens++
		if opens == 1 && s.fresh {
			s.c.mu.Lock()
			delete(s.c.fresh, s.rec.ID)
			s.c.mu.Unlock()
		}
		if opens > 1 || !s.fresh {
			if opens > 1 {
				s.c.reconnects.Add(1)
			}
			data := map[string]any{"session_id": s.rec.ID, "reason": lost}
			if !lostAt.IsZero() {
				data["down_ms"] = time.Since(lostAt).Milliseconds()
			}
			s.lifecycle(subjects.LifecycleGapPossible, "", data)
		}
		s.setOpen(ws)
		// Ending the session closes the socket with a handshake, so the
		// platform drops it from the session before Close returns.
		closed := make(chan struct{})
		stop := context.AfterFunc(s.ctx, func() {
			defer close(closed)
			_ = ws.Close(websocket.StatusNormalClosure, "bridge closing")
		})
		err = s.read(ws)
		if !stop() {
			<-closed
		}
		s.setClosed(err)
		_ = ws.CloseNow()
		if s.ctx.Err() != nil {
			return
		}
		lostAt, lost = time.Now(), err.Error()
		s.log.Info().Err(err).Msg("session socket lost; redialling")
		if !retry.Sleep(s.ctx, bo.Next()) {
			return
		}
	}
}

// dial opens the socket with the current token in the Authorization
// header (the server also takes ?token=, but a URL ends up in logs).
func (s *sock) dial() (*websocket.Conn, error) {
	tok, err := s.c.auth.get(s.ctx)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(s.ctx, dialTimeout)
	defer cancel()
	hdr := http.Header{}
	hdr.Set("Authorization", "Bearer "+tok)
	ws, resp, err := websocket.Dial(ctx, s.c.st.WSURL+"/"+url.PathEscape(s.rec.ID), &websocket.DialOptions{
		HTTPClient: &http.Client{Transport: s.c.http.Transport, CheckRedirect: connector.SameOriginRedirects},
		HTTPHeader: hdr,
	})
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			if resp.StatusCode == http.StatusForbidden {
				s.c.auth.invalidate(tok) // the first suspect; refused() probes the rest
			}
			return nil, fmt.Errorf("agentconnect: socket of %s: %w", s.rec.ID,
				&handshakeError{status: resp.StatusCode, retryAfter: connector.ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now())})
		}
		return nil, fmt.Errorf("agentconnect: socket of %s: %w", s.rec.ID, transportError(err))
	}
	ws.SetReadLimit(readLimit)
	return ws, nil
}

// refused handles the n-th 403 in a row. The first is blamed on the
// token (dial dropped it, the next dial logs in again). From the second,
// with a fresh token, the session itself is asked for: gone (404) or not
// ours (403) ends it here; otherwise the socket keeps trying.
func (s *sock) refused(n int) bool {
	if n < 2 {
		return false
	}
	ctx, cancel := context.WithTimeout(s.ctx, dialTimeout)
	defer cancel()
	_, _, err := s.c.call(ctx, http.MethodGet, "/api/chat/sessions/"+url.PathEscape(s.rec.ID), nil, "GET /api/chat/sessions/{id}")
	var pe *connector.PlatformError
	if !errors.As(err, &pe) || (pe.Status != http.StatusNotFound && pe.Status != http.StatusForbidden) {
		s.log.Error().Int("refusals", n).Msg("socket handshake refused (HTTP 403) with a fresh token, yet the session exists; retrying")
		return false
	}
	reason := map[int]string{http.StatusNotFound: "not_found", http.StatusForbidden: "not_owner"}[pe.Status]
	s.log.Warn().Str("reason", reason).Msg("session refused at the handshake and gone on the platform; detaching it")
	s.lifecycle(subjects.LifecycleSessionEnded, "", map[string]any{"session_id": s.rec.ID, "reason": reason})
	s.c.forget(ctx, s.rec.ID, 0)
	return true
}

func (s *sock) setOpen(ws *websocket.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ws = ws
	close(s.opened)
}

// setClosed marks the socket down; a send waiting for its answer gets an
// unknown outcome: the message went out, its answer may be lost.
func (s *sock) setClosed(cause error) {
	s.mu.Lock()
	s.ws = nil
	s.opened = make(chan struct{})
	s.slowOwed = 0 // the server's handler waiting on the lost socket is gone with it
	p := s.pending
	s.pending = nil
	s.mu.Unlock()
	if p != nil {
		p.done <- result{err: connector.Sent(fmt.Errorf("agentconnect: socket of %s lost after the message was sent: %w", s.rec.ID, cause))}
	}
}

// read handles frames until the socket fails or stays silent past
// ping_timeout.
func (s *sock) read(ws *websocket.Conn) error {
	for {
		// Not under s.ctx: ending the session closes ws with a handshake
		// (see run), which ends this Read.
		ctx, cancel := context.WithTimeout(context.Background(), s.c.st.PingTimeout)
		typ, data, err := ws.Read(ctx)
		silent := errors.Is(ctx.Err(), context.DeadlineExceeded)
		cancel()
		if err != nil {
			if silent && s.ctx.Err() == nil {
				s.c.missedPings.Add(1)
				return fmt.Errorf("no frame for %s (ping_timeout; the server pings every 30s)", s.c.st.PingTimeout)
			}
			return err
		}
		if typ != websocket.MessageText {
			s.c.malformed.Add(1)
			s.log.Warn().Int("bytes", len(data)).Msg("binary frame skipped: the platform sends JSON text frames")
			continue
		}
		s.handle(data)
	}
}

// key numbers a frame for FrameKey.
func (s *sock) key(raw []byte) string {
	h := sha256.Sum256(raw)
	if len(s.seen) >= maxSeen {
		clear(s.seen)
	}
	s.seen[h]++
	return FrameKey(s.rec.ID, raw, s.seen[h])
}

// lifecycle emits a lifecycle event about this session.
func (s *sock) lifecycle(l subjects.Lifecycle, key string, data map[string]any) {
	b, _ := json.Marshal(data)
	s.h.emit(connector.Event{Lifecycle: l, Room: s.rec.ID, Key: key, Data: b})
}
