package phoenix

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/rs/zerolog"

	"github.com/bridgeworks/bridge/internal/tick"
)

// Options configure a Socket; zero values mean the documented defaults.
type Options struct {
	// URL is the full ws(s):// (or http(s)://) URL including the
	// /websocket path and the query; the caller adds vsn=2.0.0 and any
	// credentials. It is only ever logged through RedactURL.
	URL string
	// Header holds extra upgrade headers (e.g. x-api-key).
	Header http.Header
	// DialTarget, if set, returns the URL and upgrade headers of each dial
	// (e.g. credentials read again, so a rotated key is used at the next
	// redial); an error fails that dial like a network error. nil dials URL
	// with Header every time. URL still names the socket in logs.
	DialTarget func() (url string, header http.Header, err error)
	// DialGate, if set, is waited on before every dial (first and redials),
	// outside DialTimeout: a process-wide pacer of new sockets. An error
	// (ctx's end) fails that dial.
	DialGate func(ctx context.Context) error
	// HTTPClient performs the upgrade; default http.DefaultClient.
	HTTPClient *http.Client

	// DialTimeout bounds one upgrade handshake; default 10s.
	DialTimeout time.Duration
	// HeartbeatInterval is the period of [null,ref,"phoenix","heartbeat",{}];
	// default 30s. A heartbeat still unanswered when the next one is due
	// closes the connection (see Stats.MissedHeartbeats).
	HeartbeatInterval time.Duration
	// Heartbeats, if set, times the heartbeats of every socket sharing it
	// (one runtime timer for all of them; its period replaces
	// HeartbeatInterval). nil: a timer per socket.
	Heartbeats *tick.Wheel
	// JoinTimeout bounds the wait for any phx_reply (join, leave, push);
	// default 10s.
	JoinTimeout time.Duration
	// WriteTimeout bounds one websocket write; default 10s. A write that
	// times out closes the connection.
	WriteTimeout time.Duration
	// CloseTimeout is how long the close handshake may take before the
	// connection is torn down anyway; default 2s.
	CloseTimeout time.Duration
	// RejoinDelays are the waits before rejoining a channel after
	// phx_error, phx_close or a rejoin timeout, by attempt; the last one
	// repeats. Default 1s, 2s, 5s, 10s (as phoenix.js).
	RejoinDelays []time.Duration
	// ReadLimit is the largest inbound message in bytes; default 1 MiB
	// (coder/websocket's own default is 32 KiB).
	ReadLimit int64
	// SendQueue is the capacity of the bounded outbound queue; default 256.
	// When it is full, sends fail at once with ErrSendQueueFull.
	SendQueue int

	// Backoff is the reconnect policy; zero fields take DefaultBackoff's
	// values.
	Backoff Backoff
	// Terminal, if set, replaces Classify's verdict on whether a
	// connection-ending error stops Run for good.
	Terminal func(error) bool

	// Logger receives connection events. Payloads and the URL's query are
	// never logged. Default: disabled (the zero Logger).
	Logger zerolog.Logger

	// OnOpen is called after each successful (re)connect, once the rejoin
	// pushes of all previously joined channels are queued; attempt is 1 for
	// the first connection of this Run, 2 for the first reconnect, and so
	// on. It runs on Run's goroutine, which is also the connection's
	// reader: no frame is read until it returns, so it must not block long.
	OnOpen func(attempt int)
	// OnClose is called after each connection ends, and after each failed
	// dial (except one cut short by shutdown), with the cause (a *CloseError, *UpgradeError,
	// ErrHeartbeatTimeout, ErrDropped, a read/write/dial error, the
	// context's error on shutdown, or the Stop error / ErrStopped). It runs
	// on Run's goroutine.
	OnClose func(err error)
	// OnJoinError is called when an automatic rejoin gets an error reply
	// (*ReplyError); the channel has then been unregistered and will not
	// be rejoined. It runs on the reader goroutine; it must not block long
	// nor call Join on the same socket synchronously.
	OnJoinError func(topic string, err error)
	// OnRetryAfter is called when a refused upgrade asked for a wait
	// (UpgradeError.RetryAfter > 0), with the wait Run then makes (after
	// Backoff.RetryAfterMax). It runs on Run's goroutine.
	OnRetryAfter func(err *UpgradeError, wait time.Duration)
}

func (o Options) withDefaults() Options {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.DialTimeout, 10*time.Second)
	if o.Heartbeats != nil {
		o.HeartbeatInterval = o.Heartbeats.Period()
	}
	def(&o.HeartbeatInterval, 30*time.Second)
	def(&o.JoinTimeout, 10*time.Second)
	def(&o.WriteTimeout, 10*time.Second)
	def(&o.CloseTimeout, 2*time.Second)
	if len(o.RejoinDelays) == 0 {
		o.RejoinDelays = []time.Duration{time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second}
	}
	if o.ReadLimit <= 0 {
		o.ReadLimit = 1 << 20
	}
	if o.SendQueue <= 0 {
		o.SendQueue = 256
	}
	o.Backoff = o.Backoff.withDefaults()
	o.Header = o.Header.Clone()
	return o
}

// Stats are cumulative counters for metrics.
type Stats struct {
	Connects         uint64 // connections opened
	Reconnects       uint64 // connections opened after the first one of a Run
	MissedHeartbeats uint64 // heartbeats unanswered for a whole interval
	FramesIn         uint64 // well-formed frames received
	DroppedFrames    uint64 // frames skipped: malformed, binary, stale join_ref, unknown topic or ref
	SendQueueFull    uint64 // sends refused with ErrSendQueueFull
}

// Socket is one Phoenix Channels v2 connection that redials by itself. It
// is safe for concurrent use. Create it with NewSocket, register channels
// with Channel, and drive it with Run.
type Socket struct {
	opts    Options
	log     *zerolog.Logger // &opts.Logger, which names the socket's URL (one logger per socket, not two)
	refs    atomic.Uint64
	running atomic.Bool

	mu      sync.Mutex
	conn    *liveConn           // the open connection; nil while down
	changed chan struct{}       // closed whenever conn changes; made by a wait for the change, nil while nobody waits
	chans   map[string]*Channel // registered channels by topic

	stopped chan struct{} // closed by the first Stop, under mu
	stopErr error         // set before stopped is closed

	// dialCancel ends the dial in progress, its wait for a dial slot
	// included (Stop); guarded by mu.
	dialCancel context.CancelFunc

	connects, reconnects, missedHB, framesIn, dropped, queueFull atomic.Uint64
}

// NewSocket returns an idle Socket; nothing is dialled until Run.
func NewSocket(opts Options) *Socket {
	opts = opts.withDefaults()
	redacted := RedactURL(opts.URL)
	opts.Logger = opts.Logger.Hook(urlHook(redacted))
	if opts.DialTarget != nil {
		opts.URL = redacted // only names the socket: not kept with its credentials
	}
	s := &Socket{
		opts:    opts,
		chans:   make(map[string]*Channel),
		stopped: make(chan struct{}),
	}
	s.log = &s.opts.Logger
	return s
}

// urlHook adds the socket's (redacted) URL to every event it logs: a hook
// costs the socket a few dozen bytes where a logger context (Logger.With)
// reserves 500.
type urlHook string

func (h urlHook) Run(e *zerolog.Event, _ zerolog.Level, _ string) { e.Str("url", string(h)) }

// Run dials and keeps the socket connected until ctx is done, Stop is
// called or a terminal error happens, and returns nil, Stop's error or that
// terminal error respectively. After any other loss it waits per
// Options.Backoff (and Classify) and redials, rejoining every channel that
// was joined, each with a new join_ref. Run returns only once the
// goroutines it started have done their work (which includes waiting for
// a running onMessage callback): every one has exited but the last, which
// exits as it reports the end. A Socket runs at most once at a time; after Stop it
// cannot run again. Run is Start and a wait for its end.
func (s *Socket) Run(ctx context.Context) error {
	res := make(chan error, 1)
	if err := s.Start(ctx, func(err error) { res <- err }); err != nil {
		return err
	}
	return <-res
}

// Start is Run on goroutines of the socket's own: it returns at once (or
// ErrRunning), and done is called with what Run would return, once, on the
// run's last goroutine, after every other one ended; the socket may run
// again from within done. While the connection
// is open and idle, the run holds one goroutine with the runtime's
// smallest stack, waiting for the peer's next byte; the reader that decodes
// and dispatches frames runs only once bytes came.
func (s *Socket) Start(ctx context.Context, done func(error)) error {
	if !s.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	r := &run{s: s, ctx: ctx, done: done, rc: reconnector{b: &s.opts.Backoff}}
	go r.loop(nil) // owned: the run's goroutines hand it on until it ends; done reports the end
	return nil
}

// run is one Start's state, handed between the goroutines that carry it:
// the reader parks while its connection idles and the stream's waiter goes
// on with it. It keeps the run's ctx, as a goroutine's closure would.
//
// Stop cuts short a dial in progress (dialCancel), closes the open
// connection and ends a backoff wait (stopped): a run needs no context of
// its own, which an idle socket would keep (with the children it
// registers) for its whole life.
type run struct {
	s     *Socket
	ctx   context.Context
	done  func(error)
	rc    reconnector
	opens int
}

// loop serves lc (nil: dials first) and redials until the run ends, or
// returns early when lc's reader parked.
func (r *run) loop(lc *liveConn) {
	s, ctx := r.s, r.ctx
	for {
		var err error
		if lc == nil {
			if s.isStopped() {
				r.end(s.stopErr)
				return
			}
			if ctx.Err() != nil {
				r.end(nil)
				return
			}
			if lc, err = s.dial(ctx); err == nil {
				r.opens++
				s.open(ctx, lc, r.opens, r.loop)
			}
		}
		connected, lived := false, time.Duration(0)
		if lc != nil {
			if lc.readLoop() {
				return // parked: the stream's waiter goes on with lc
			}
			err = s.closed(lc)
			connected, lived = true, time.Since(lc.opened)
			lc = nil
		}
		if s.isStopped() || ctx.Err() != nil {
			if connected {
				if err == nil && s.isStopped() {
					err = s.stopCause()
				} else if err == nil {
					err = ctx.Err()
				}
				s.notifyClose(err)
			}
			if s.isStopped() {
				r.end(s.stopErr)
			} else {
				r.end(nil)
			}
			return
		}
		terminal, lo, hi := s.opts.Backoff.classify(err)
		if s.opts.Terminal != nil {
			terminal = s.opts.Terminal(err)
		}
		if terminal {
			s.log.Error().Err(err).Msg("phoenix: terminal error, not reconnecting")
			s.Stop(err) // before OnClose, so it sees Stopped
			s.notifyClose(err)
			r.end(s.stopErr)
			return
		}
		s.notifyClose(err)
		delay := r.rc.next(connected, lived)
		if hi > 0 {
			delay = max(delay, s.opts.Backoff.between(lo, hi))
		}
		s.retryAfter(err, delay)
		n := r.rc.rapidCount()
		lvl := zerolog.WarnLevel
		if n >= 10 {
			// The Python client gives up here; a gateway keeps trying, but
			// this usually means another client holds the same identity.
			lvl = zerolog.ErrorLevel
		}
		s.log.WithLevel(lvl).Err(err).Int("rapid_disconnects", n).Bool("connected", connected).Int64("lived_ms", lived.Milliseconds()).Int64("retry_in_ms", delay.Milliseconds()).
			Msg("phoenix: connection lost, reconnecting")

		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done(): // the loop's top decides
			t.Stop()
		case <-s.stopped:
			t.Stop()
		}
	}
}

// end reports the run's result; the socket may run again (unless stopped).
func (r *run) end(err error) {
	r.s.running.Store(false)
	r.done(err)
}

// retryAfter reports and logs the wait after an upgrade refused with a
// retry_after, saying so at warn level when Backoff.RetryAfterMax cut it.
func (s *Socket) retryAfter(err error, delay time.Duration) {
	var ue *UpgradeError
	if !errors.As(err, &ue) || ue.RetryAfter <= 0 {
		return
	}
	if ue.RetryAfter > s.opts.Backoff.RetryAfterMax {
		s.log.Warn().Int("status", ue.Status).Str("route", "socket upgrade").Int64("asked_wait_ms", ue.RetryAfter.Milliseconds()).
			Int64("capped_wait_ms", delay.Milliseconds()).Msg("phoenix: server asked for a wait longer than RetryAfterMax; waiting RetryAfterMax instead")
	}
	if s.opts.OnRetryAfter != nil {
		s.opts.OnRetryAfter(ue, delay)
	}
}

// Stop ends Run with err as its result and prevents further reconnects
// (e.g. on a platform "supersede" push). The current connection is closed
// with code 1000. Calls that wait for the socket return ErrStopped.
// Idempotent: only the first error counts.
func (s *Socket) Stop(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.isStopped() {
		s.stopErr = err
		close(s.stopped)
	}
	if s.dialCancel != nil {
		s.dialCancel()
	}
	if s.conn != nil {
		s.conn.fail(nil, websocket.StatusNormalClosure, "client shutdown")
	}
}

// Stopped reports whether the socket stopped for good (Stop, or a terminal
// error): an OnClose that sees it knows no redial follows.
func (s *Socket) Stopped() bool { return s.isStopped() }

// Drop closes the current connection (code 1000, reason "dropped") so that
// Run reconnects after its backoff; for tests and fault injection. It
// does nothing while disconnected.
func (s *Socket) Drop() {
	s.mu.Lock()
	lc := s.conn
	s.mu.Unlock()
	if lc != nil {
		lc.fail(ErrDropped, websocket.StatusNormalClosure, "dropped")
	}
}

// Connected reports whether a connection is open right now.
func (s *Socket) Connected() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conn != nil && !s.conn.isClosing()
}

// Stats returns a snapshot of the counters.
func (s *Socket) Stats() Stats {
	return Stats{
		Connects:         s.connects.Load(),
		Reconnects:       s.reconnects.Load(),
		MissedHeartbeats: s.missedHB.Load(),
		FramesIn:         s.framesIn.Load(),
		DroppedFrames:    s.dropped.Load(),
		SendQueueFull:    s.queueFull.Load(),
	}
}

func (s *Socket) isStopped() bool {
	select {
	case <-s.stopped:
		return true
	default:
		return false
	}
}

func (s *Socket) stopCause() error {
	if s.stopErr != nil {
		return s.stopErr
	}
	return ErrStopped
}

func (s *Socket) notifyClose(err error) {
	if s.opts.OnClose != nil {
		s.opts.OnClose(err)
	}
}

func (s *Socket) nextRef() string { return strconv.FormatUint(s.refs.Add(1), 10) }

// dial performs the upgrade. A refused upgrade becomes *UpgradeError.
func (s *Socket) dial(ctx context.Context) (*liveConn, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.mu.Lock()
	if s.isStopped() {
		cancel()
	}
	s.dialCancel = cancel
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.dialCancel = nil
		s.mu.Unlock()
	}()
	if s.opts.DialGate != nil {
		if err := s.opts.DialGate(ctx); err != nil {
			return nil, fmt.Errorf("phoenix: dial: waiting for a dial slot: %w", err)
		}
	}
	dctx, cancel := context.WithTimeout(ctx, s.opts.DialTimeout)
	defer cancel()
	target, header := s.opts.URL, s.opts.Header
	if s.opts.DialTarget != nil {
		var err error
		if target, header, err = s.opts.DialTarget(); err != nil {
			return nil, fmt.Errorf("phoenix: dial: %w", err)
		}
	}
	// The upgrade's connection is read through a stream (see stream).
	hc := http.Client{}
	if s.opts.HTTPClient != nil {
		hc = *s.opts.HTTPClient
	}
	tr := &streamTransport{base: hc.Transport}
	if tr.base == nil {
		tr.base = http.DefaultTransport
	}
	hc.Transport = tr
	ws, resp, err := websocket.Dial(dctx, target, &websocket.DialOptions{
		HTTPClient: &hc,
		HTTPHeader: header,
	})
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			var body []byte
			if resp.Body != nil {
				body, _ = io.ReadAll(io.LimitReader(resp.Body, 1024))
			}
			return nil, newUpgradeError(resp.StatusCode, resp.Header, body, time.Now())
		}
		return nil, dialError(target, err)
	}
	if tr.st == nil { // the transport's response body was not the connection: nothing to read through
		_ = ws.CloseNow()
		return nil, fmt.Errorf("phoenix: dial: the upgrade's response body is not a connection")
	}
	ws.SetReadLimit(s.opts.ReadLimit)
	return newLiveConn(s, ws, tr.st), nil
}

// open makes lc the socket's connection: it arms the heartbeat, queues
// the rejoins and calls OnOpen; the caller then runs lc.readLoop, and
// closed once it failed. resume goes on with lc after its reader parked
// (on the stream's waiter goroutine).
func (s *Socket) open(ctx context.Context, lc *liveConn, attempt int, resume func(*liveConn)) {
	s.connects.Add(1)
	if attempt > 1 {
		s.reconnects.Add(1)
	}
	lc.wake = func() { resume(lc) }
	lc.start()

	s.mu.Lock()
	s.conn = lc
	if s.isStopped() { // a Stop that came before the connection was set
		lc.fail(nil, websocket.StatusNormalClosure, "client shutdown")
	}
	rejoins := s.rejoinAllLocked(lc)
	s.broadcastLocked()
	s.mu.Unlock()
	s.log.Info().Int("attempt", attempt).Int("rejoins", rejoins).Msg("phoenix: connected")
	if s.opts.OnOpen != nil {
		// Nothing is read meanwhile: a slow OnOpen counts as a busy
		// reader, so the heartbeat does not take it for a dead link.
		lc.readerBusy.Store(true)
		s.opts.OnOpen(attempt)
		lc.readerBusy.Store(false)
	}

	// The run's ctx ends the connection (so does Stop): the callback runs
	// on a goroutine of its own, only then. A ctx that never ends costs
	// nothing.
	if ctx.Done() != nil {
		lc.unwatch = context.AfterFunc(ctx, func() { lc.fail(nil, websocket.StatusNormalClosure, "client shutdown") })
	}
}

// closed runs once lc's reader failed: it forgets the connection, waits
// for all of lc's goroutines, and returns the cause (nil when ctx or Stop
// ended it).
func (s *Socket) closed(lc *liveConn) error {
	if lc.unwatch != nil {
		lc.unwatch()
	}
	s.mu.Lock()
	if s.conn == lc {
		s.conn = nil
	}
	s.channelsLostLocked()
	s.broadcastLocked()
	s.mu.Unlock()

	lc.shutdown()
	return lc.cause
}

// broadcastLocked wakes everything waiting for a connection change.
func (s *Socket) broadcastLocked() {
	if s.changed != nil {
		close(s.changed)
		s.changed = nil
	}
}

// waitOpen returns the open connection, waiting for one while the socket
// is down. unreg, if not nil, aborts the wait with ErrLeft.
func (s *Socket) waitOpen(ctx context.Context, unreg <-chan struct{}) (*liveConn, error) {
	for {
		s.mu.Lock()
		if s.changed == nil {
			s.changed = make(chan struct{})
		}
		lc, changed := s.conn, s.changed
		s.mu.Unlock()
		if lc != nil && !lc.isClosing() {
			return lc, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-s.stopped:
			return nil, ErrStopped
		case <-unreg:
			return nil, ErrLeft
		}
	}
}

// errorsIsAny reports whether err matches any of targets.
func errorsIsAny(err error, targets ...error) bool {
	for _, t := range targets {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}
