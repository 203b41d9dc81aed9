package phoenix

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/bridgeworks/bridge/internal/tick"
)

// liveConn is one open websocket. Its reader (decodes and dispatches
// frames, may block in onMessage) runs on the run's goroutine (run.loop
// calls readLoop) while bytes come, and parks when the library has read
// all of them: the stream's waiter, one small goroutine, then waits for
// the peer and goes on with the reader (wake). The writer (heartbeat
// first, then the bounded send queue) runs only while frames wait, the
// closer only from the first failure until the websocket is closed, and
// the heartbeat is a timer on the runtime's timer heap, shared by every
// socket of the process, that runs a short callback each interval: an
// idle socket costs one goroutine with the smallest stack. It also owns
// the timers for reply timeouts and delayed rejoins. The first failure
// closes closing and starts the closer, whose close ends the reader's
// read; shutdown then stops and waits for everything else.
type liveConn struct {
	s      *Socket
	ws     *websocket.Conn
	st     *stream // ws's byte stream; closing it ends every read and write
	opened time.Time
	// wake goes on with the reader after it parked; unwatch stops the
	// watch on the run's ctx (both set by Socket.open).
	wake    func()
	unwatch func() bool

	wmu     sync.Mutex
	sendq   [][]byte // bounded outbound queue (opts.SendQueue)
	hb      []byte   // the next heartbeat; written before sendq
	writing bool     // a writer goroutine is running
	// wtimer bounds the write in progress (WriteTimeout). It is made by a
	// writer's first write and reused by its next ones, on the writer
	// goroutine only, and dropped when the writer ends (guarded by wmu
	// then): an idle socket keeps none.
	wtimer *time.Timer
	wdone  bool // shutdown began: no writer starts any more

	failOnce sync.Once
	closing  chan struct{} // closed by the first fail
	cause    error         // set before closing is closed
	code     websocket.StatusCode
	reason   string

	wg sync.WaitGroup // writer, closer, timer callbacks (heartbeat included)

	beat tick.Entry // the heartbeat's place on Options.Heartbeats, when set

	mu         sync.Mutex
	pending    map[string]func(reply) // by ref; called once, on the reader goroutine or a timer; nil while empty (an idle connection keeps no table)
	timers     []*time.Timer          // armed: the heartbeat's, and a few reply and rejoin timers (a map cost ~0.1 KiB more)
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

func newLiveConn(s *Socket, ws *websocket.Conn, st *stream) *liveConn {
	return &liveConn{
		s:       s,
		ws:      ws,
		st:      st,
		opened:  time.Now(),
		closing: make(chan struct{}),
	}
}

// start arms the heartbeat: on the shared wheel, or a timer of its own
// re-armed at each beat; the caller then runs readLoop.
func (lc *liveConn) start() {
	if w := lc.s.opts.Heartbeats; w != nil {
		w.Add(&lc.beat, lc)
		return
	}
	lc.afterFunc(lc.s.opts.HeartbeatInterval, lc.beatTimer)
}

// Tick is the heartbeat on the shared wheel (tick.Ticker). A tick that
// began before shutdown stopped the entry may still come: heartbeat then
// finds the connection closing, or starts nothing shutdown has not ended.
func (lc *liveConn) Tick() { lc.heartbeat() }

// beatTimer is the heartbeat on a timer of the socket's own.
func (lc *liveConn) beatTimer() {
	if lc.heartbeat() {
		lc.afterFunc(lc.s.opts.HeartbeatInterval, lc.beatTimer)
	}
}

// fail records the first cause and starts the end of the connection: the
// closer sends the close code and reason if the socket still works, and
// its close ends the reader's read.
func (lc *liveConn) fail(cause error, code websocket.StatusCode, reason string) {
	lc.failOnce.Do(func() {
		lc.cause, lc.code, lc.reason = cause, code, reason
		close(lc.closing)
		// The reader is still inside readLoop (it returns only after a
		// failure, and this is the first), so the Add comes before
		// shutdown's Wait.
		lc.wg.Add(1)
		go func() { // owned: ends once the websocket is closed; shutdown waits for it
			defer lc.wg.Done()
			lc.close()
		}()
	})
}

// close closes the websocket with the failure's code and reason; a close
// handshake still unfinished after CloseTimeout is cut short by closing the
// stream, which ends every read and write.
func (lc *liveConn) close() {
	t := time.AfterFunc(lc.s.opts.CloseTimeout, lc.abort)
	_ = lc.ws.Close(lc.code, lc.reason)
	t.Stop()
}

// abort closes the connection under the websocket library: its reads and
// writes in progress fail, and so does the stream's waiter.
func (lc *liveConn) abort() { _ = lc.st.Close() }

func (lc *liveConn) isClosing() bool {
	select {
	case <-lc.closing:
		return true
	default:
		return false
	}
}

// shutdown runs after readLoop returned (so the connection failed and the
// closer runs or ran): it stops the timers and waits for every goroutine of
// this connection, the closer's included.
func (lc *liveConn) shutdown() {
	lc.beat.Stop()
	lc.wmu.Lock()
	lc.wdone = true
	lc.wmu.Unlock()

	lc.mu.Lock()
	lc.timersDone = true
	for _, tm := range lc.timers {
		if tm.Stop() {
			lc.wg.Done()
		}
	}
	lc.timers = nil
	lc.pending = nil
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
		if i := slices.Index(lc.timers, tm); i >= 0 {
			lc.timers = slices.Delete(lc.timers, i, i+1)
		}
		lc.mu.Unlock()
		f()
	})
	lc.timers = append(lc.timers, tm)
}

// send queues an encoded frame without blocking.
func (lc *liveConn) send(b []byte) error {
	if lc.isClosing() {
		return ErrNotConnected
	}
	lc.wmu.Lock()
	if len(lc.sendq) >= lc.s.opts.SendQueue {
		lc.wmu.Unlock()
		lc.s.queueFull.Add(1)
		lc.s.log.Warn().Int("capacity", lc.s.opts.SendQueue).Msg("phoenix: send queue full, frame refused")
		return ErrSendQueueFull
	}
	lc.sendq = append(lc.sendq, b)
	lc.startWriterLocked()
	lc.wmu.Unlock()
	return nil
}

// startWriterLocked starts the writer unless one runs or shutdown began;
// wmu is held.
func (lc *liveConn) startWriterLocked() {
	if lc.writing || lc.wdone {
		return
	}
	lc.writing = true
	lc.wg.Add(1)
	go func() { defer lc.wg.Done(); lc.writeLoop() }()
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
	if lc.pending == nil {
		lc.pending = make(map[string]func(reply), 1)
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
	if len(lc.pending) == 0 {
		lc.pending = nil
	}
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

// readLoop reads and dispatches frames until a read fails (the peer
// closed or the link broke, or the closer closed the websocket after a
// failure), and returns false; or until the library has read every byte
// that came, and returns true: it parked, the caller's goroutine ends, and
// the stream's waiter calls wake once the peer sends again (or the
// connection fails). Reads need no context: the closer, and the write and
// close timeouts, end them by closing the stream.
func (lc *liveConn) readLoop() (parked bool) {
	s := lc.s
	for {
		if lc.st.idle(lc.wake) {
			return true
		}
		typ, data, err := lc.ws.Read(context.Background())
		if err != nil {
			lc.fail(readError(err), websocket.StatusNormalClosure, "")
			return false
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

// writeLoop writes the queued frames, the heartbeat first, and returns
// when none is left (or the connection fails).
func (lc *liveConn) writeLoop() {
	for {
		lc.wmu.Lock()
		var b []byte
		switch {
		case lc.isClosing():
		case lc.hb != nil:
			b, lc.hb = lc.hb, nil
		case len(lc.sendq) > 0:
			b = lc.sendq[0]
			lc.sendq[0] = nil
			lc.sendq = lc.sendq[1:]
			if len(lc.sendq) == 0 {
				lc.sendq = nil // let the backing array go while idle
			}
		}
		if b == nil {
			lc.writing = false
			lc.wtimer = nil // an idle socket keeps no timer; the next writer makes one
			lc.wmu.Unlock()
			return
		}
		lc.wmu.Unlock()
		if err := lc.write(b); err != nil {
			lc.fail(err, websocket.StatusNormalClosure, "")
			lc.wmu.Lock()
			lc.writing = false
			lc.wmu.Unlock()
			return
		}
	}
}

// write writes one frame within WriteTimeout: a write still blocked then
// closes the stream, and so the connection (as an expired write deadline
// does in the websocket library).
func (lc *liveConn) write(b []byte) error {
	d := lc.s.opts.WriteTimeout
	if lc.wtimer == nil {
		lc.wtimer = time.AfterFunc(d, lc.abort)
	} else {
		lc.wtimer.Reset(d)
	}
	err := lc.ws.Write(context.Background(), websocket.MessageText, b)
	if !lc.wtimer.Stop() && err != nil {
		return fmt.Errorf("phoenix: write: not done within %v: %w", d, context.DeadlineExceeded)
	}
	if err != nil {
		return fmt.Errorf("phoenix: write: %w", err)
	}
	return nil
}

// heartbeat runs every interval on a timer (not a goroutine of its own)
// and reports whether the connection goes on. If the previous heartbeat
// is still unanswered,
// and the reader neither received a frame nor sat in onMessage since it
// was sent, the connection is presumed dead: it is closed with reason
// "heartbeat timeout". Frames or a busy reader prove the link is alive
// (the reply may be queued behind a slow consumer), so then another
// heartbeat is sent instead.
func (lc *liveConn) heartbeat() bool {
	s := lc.s
	if lc.isClosing() {
		return false
	}
	lc.mu.Lock()
	outstanding := len(lc.hbRefs) > 0
	alive := lc.framesRead.Load() != lc.hbFramesAt || lc.readerBusy.Load()
	if outstanding && !alive {
		lc.mu.Unlock()
		s.missedHB.Add(1)
		s.log.Warn().Int64("interval_ms", s.opts.HeartbeatInterval.Milliseconds()).Msg("phoenix: heartbeat unanswered, closing")
		lc.fail(ErrHeartbeatTimeout, websocket.StatusNormalClosure, "heartbeat timeout")
		return false
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
	lc.wmu.Lock()
	if lc.hb == nil { // else the previous heartbeat is still unwritten; the write timeout will catch a stuck writer
		lc.hb = b
		lc.startWriterLocked()
	}
	lc.wmu.Unlock()
	return true
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
