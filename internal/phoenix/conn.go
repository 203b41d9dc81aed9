package phoenix

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// liveConn is one open websocket and the three goroutines that serve it:
// the reader (decodes and dispatches frames, may block in onMessage), the
// writer (drains the heartbeat slot first, then the bounded send queue)
// and the heartbeat ticker. It also owns the timers for reply timeouts
// and delayed rejoins. The first failure closes closing; shutdown then
// stops and waits for everything.
type liveConn struct {
	s      *Socket
	ws     *websocket.Conn
	opened time.Time

	ctx    context.Context // cancelled at the end of shutdown; bounds reads and writes
	cancel context.CancelFunc

	sendq chan []byte // bounded outbound queue
	hbq   chan []byte // the next heartbeat; written before sendq

	failOnce sync.Once
	closing  chan struct{} // closed by the first fail
	cause    error         // set before closing is closed
	code     websocket.StatusCode
	reason   string

	wg sync.WaitGroup // reader, writer, heartbeat, timer callbacks

	mu         sync.Mutex
	pending    map[string]func(reply) // by ref; called once, on the reader goroutine or a timer
	timers     map[*time.Timer]struct{}
	timersDone bool
	hbRefs     []string // outstanding heartbeat refs, newest last
	hbFramesAt uint64   // framesRead when the oldest outstanding heartbeat was sent
	framesRead atomic.Uint64
	readerBusy atomic.Bool // inside onMessage
}

// reply is the outcome of a push as seen by its waiter.
type reply struct {
	status   string
	response json.RawMessage
	err      error // set instead of status when the channel errored
}

func newLiveConn(s *Socket, ws *websocket.Conn) *liveConn {
	ctx, cancel := context.WithCancel(context.Background())
	return &liveConn{
		s:       s,
		ws:      ws,
		opened:  time.Now(),
		ctx:     ctx,
		cancel:  cancel,
		sendq:   make(chan []byte, s.opts.SendQueue),
		hbq:     make(chan []byte, 1),
		closing: make(chan struct{}),
		pending: make(map[string]func(reply)),
		timers:  make(map[*time.Timer]struct{}),
	}
}

func (lc *liveConn) start() {
	lc.wg.Add(3)
	go func() { defer lc.wg.Done(); lc.readLoop() }()
	go func() { defer lc.wg.Done(); lc.writeLoop() }()
	go func() { defer lc.wg.Done(); lc.heartbeatLoop() }()
}

// fail records the first cause and starts the end of the connection. The
// close code and reason are sent to the server if the socket still works.
func (lc *liveConn) fail(cause error, code websocket.StatusCode, reason string) {
	lc.failOnce.Do(func() {
		lc.cause, lc.code, lc.reason = cause, code, reason
		close(lc.closing)
	})
}

func (lc *liveConn) isClosing() bool {
	select {
	case <-lc.closing:
		return true
	default:
		return false
	}
}

// shutdown closes the websocket (handshake bounded by CloseTimeout), then
// stops timers and waits for every goroutine of this connection.
func (lc *liveConn) shutdown() {
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		_ = lc.ws.Close(lc.code, lc.reason)
	}()
	t := time.NewTimer(lc.s.opts.CloseTimeout)
	select {
	case <-closed:
	case <-t.C:
	}
	t.Stop()
	lc.cancel() // aborts a read or write still in progress, closing the conn
	<-closed

	lc.mu.Lock()
	lc.timersDone = true
	for tm := range lc.timers {
		if tm.Stop() {
			lc.wg.Done()
		}
	}
	lc.timers = nil
	lc.pending = map[string]func(reply){}
	lc.mu.Unlock()
	lc.wg.Wait()
}

// afterFunc runs f after d on its own goroutine unless the connection ends
// first; shutdown waits for it.
func (lc *liveConn) afterFunc(d time.Duration, f func()) {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if lc.timersDone {
		return
	}
	lc.wg.Add(1)
	var tm *time.Timer
	tm = time.AfterFunc(d, func() {
		defer lc.wg.Done()
		lc.mu.Lock()
		if lc.timers != nil {
			delete(lc.timers, tm)
		}
		lc.mu.Unlock()
		f()
	})
	lc.timers[tm] = struct{}{}
}

// send queues an encoded frame without blocking.
func (lc *liveConn) send(b []byte) error {
	if lc.isClosing() {
		return ErrNotConnected
	}
	select {
	case lc.sendq <- b:
		return nil
	default:
		lc.s.queueFull.Add(1)
		lc.s.log.Warn().Int("capacity", cap(lc.sendq)).Msg("phoenix: send queue full, frame refused")
		return ErrSendQueueFull
	}
}

// sendFrame encodes and queues f.
func (lc *liveConn) sendFrame(f Frame) error {
	b, err := EncodeFrame(f)
	if err != nil {
		return err
	}
	return lc.send(b)
}

// expect registers fn for the phx_reply carrying ref. It reports false if
// the connection is already closing.
func (lc *liveConn) expect(ref string, fn func(reply)) bool {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if lc.timersDone || lc.isClosing() {
		return false
	}
	lc.pending[ref] = fn
	return true
}

// take removes and returns the reply handler for ref, if any.
func (lc *liveConn) take(ref string) func(reply) {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	fn := lc.pending[ref]
	delete(lc.pending, ref)
	return fn
}

// request sends f (whose Ref must be set) and waits for its reply, the
// connection's end, the reply timeout, ctx, or unreg (may be nil).
func (lc *liveConn) request(ctx context.Context, f Frame, unreg <-chan struct{}) (reply, error) {
	ref := *f.Ref
	ch := make(chan reply, 1)
	if !lc.expect(ref, func(r reply) { ch <- r }) {
		return reply{}, ErrNotConnected
	}
	defer lc.take(ref)
	if err := lc.sendFrame(f); err != nil {
		return reply{}, err
	}
	t := time.NewTimer(lc.s.opts.JoinTimeout)
	defer t.Stop()
	select {
	case r := <-ch:
		return r, r.err
	case <-lc.closing:
		return reply{}, ErrNotConnected
	case <-t.C:
		return reply{}, ErrTimeout
	case <-ctx.Done():
		return reply{}, ctx.Err()
	case <-unreg:
		return reply{}, ErrLeft
	}
}

func (lc *liveConn) readLoop() {
	s := lc.s
	for {
		typ, data, err := lc.ws.Read(lc.ctx)
		if err != nil {
			lc.fail(readError(err), websocket.StatusNormalClosure, "")
			return
		}
		lc.framesRead.Add(1)
		if lc.isClosing() {
			continue // drain until the close handshake ends
		}
		if typ != websocket.MessageText {
			s.dropped.Add(1)
			s.log.Warn().Err(ErrBinaryFrame).Int("bytes", len(data)).Msg("phoenix: frame skipped")
			continue
		}
		f, err := DecodeFrame(data)
		if err != nil {
			s.dropped.Add(1)
			s.log.Warn().Err(err).Int("bytes", len(data)).Msg("phoenix: frame skipped")
			continue
		}
		s.framesIn.Add(1)
		s.dispatch(lc, f)
	}
}

// readError turns a read failure into the connection's cause.
func readError(err error) error {
	if code := websocket.CloseStatus(err); code != -1 {
		var ce websocket.CloseError
		reason := ""
		if errors.As(err, &ce) {
			reason = ce.Reason
		}
		return &CloseError{Code: int(code), Reason: reason}
	}
	return fmt.Errorf("phoenix: read: %w", err)
}

func (lc *liveConn) writeLoop() {
	for {
		var b []byte
		select {
		case b = <-lc.hbq:
		default:
			select {
			case b = <-lc.hbq:
			case b = <-lc.sendq:
			case <-lc.closing:
				return
			}
		}
		wctx, cancel := context.WithTimeout(lc.ctx, lc.s.opts.WriteTimeout)
		err := lc.ws.Write(wctx, websocket.MessageText, b)
		cancel()
		if err != nil {
			lc.fail(fmt.Errorf("phoenix: write: %w", err), websocket.StatusNormalClosure, "")
			return
		}
	}
}

// heartbeatLoop sends a heartbeat every interval. If the previous one is
// still unanswered when the next is due, and the reader neither received
// a frame nor sat in onMessage since it was sent, the connection is
// presumed dead: it is closed with reason "heartbeat timeout". Frames or
// a busy reader prove the link is alive (the reply may be queued behind a
// slow consumer), so then another heartbeat is sent instead.
func (lc *liveConn) heartbeatLoop() {
	s := lc.s
	t := time.NewTicker(s.opts.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-lc.closing:
			return
		case <-t.C:
		}
		lc.mu.Lock()
		outstanding := len(lc.hbRefs) > 0
		alive := lc.framesRead.Load() != lc.hbFramesAt || lc.readerBusy.Load()
		if outstanding && !alive {
			lc.mu.Unlock()
			s.missedHB.Add(1)
			s.log.Warn().Dur("interval", s.opts.HeartbeatInterval).Msg("phoenix: heartbeat unanswered, closing")
			lc.fail(ErrHeartbeatTimeout, websocket.StatusNormalClosure, "heartbeat timeout")
			return
		}
		ref := s.nextRef()
		lc.hbRefs = append(lc.hbRefs, ref)
		if len(lc.hbRefs) > 8 {
			lc.hbRefs = lc.hbRefs[len(lc.hbRefs)-8:]
		}
		lc.hbFramesAt = lc.framesRead.Load()
		lc.mu.Unlock()

		// ref is a decimal number, so no escaping is needed.
		b := []byte(`[null,"` + ref + `","` + TopicPhoenix + `","` + EventHeartbeat + `",{}]`)
		select {
		case lc.hbq <- b:
		default: // the previous heartbeat is still unwritten; the write timeout will catch a stuck writer
		}
	}
}

// ackHeartbeat reports whether ref answers an outstanding heartbeat, and
// clears them all if so.
func (lc *liveConn) ackHeartbeat(ref string) bool {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	for _, r := range lc.hbRefs {
		if r == ref {
			lc.hbRefs = lc.hbRefs[:0]
			return true
		}
	}
	return false
}
