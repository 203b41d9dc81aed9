package polyaiemu

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/bridgeworks/bridge/emulator/emuhttp"
	"github.com/coder/websocket"
	"github.com/rs/zerolog"
)

// Server is an in-process PolyAI Messaging API: the REST endpoints
// under /api/v1/ and the WebSocket at SocketPath. All methods are safe
// for concurrent use.
type Server struct {
	opts   Options
	log    zerolog.Logger
	secret []byte // signs access tokens
	mux    *http.ServeMux

	// ctx is cancelled by Close. wg counts the idle checker and the
	// socket goroutines: the reader (the upgraded HTTP handler) and the
	// on-demand writer of every connection.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	web *emuhttp.Server // the built-in listener

	dials, beats emuhttp.Arrivals // upgrade requests and HEARTBEATs, for their rates

	// mu guards everything below and every session. It is never held
	// across a network write.
	mu         sync.Mutex
	closed     bool
	lastTime   time.Time
	tokens     map[string]*tokenState
	sessions   map[string]*session
	order      []*session
	live       map[*session]struct{} // sessions not ended, for the idle check
	conns      map[*wsConn]struct{}
	handshakes []HandshakeRecord
	faults     faultState
}

// New returns a Server configured by opts. It does not listen: use
// [Server.Start], [Server.ListenAndServe], or mount [Server.Handler] on
// a server of your own. Call [Server.Close] when done.
func New(opts Options) *Server {
	opts = opts.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		opts:     opts,
		log:      *opts.Logger,
		secret:   []byte(randomHex(32)),
		mux:      http.NewServeMux(),
		ctx:      ctx,
		cancel:   cancel,
		tokens:   map[string]*tokenState{},
		sessions: map[string]*session{},
		live:     map[*session]struct{}{},
		conns:    map[*wsConn]struct{}{},
	}
	s.routes()
	s.web = emuhttp.New("polyaiemu", s.Handler(), func(url string) {
		s.log.Info().Str("url", url).Msg("polyai emulator listening")
	})
	if opts.IdleTimeout > 0 {
		s.wg.Add(1)
		go s.idleLoop()
	}
	return s
}

// Handler returns the HTTP handler serving the REST API and the socket.
func (s *Server) Handler() http.Handler { return s.mux }

// Start listens on a random 127.0.0.1 port and serves in the
// background. It returns the base URL, e.g. "http://127.0.0.1:41234".
func (s *Server) Start() (url string, err error) { return s.web.Start() }

// ListenAndServe serves on addr until ctx is done, then closes the
// Server. It returns nil after a shutdown caused by ctx.
func (s *Server) ListenAndServe(ctx context.Context, addr string) error {
	return s.web.ListenAndServe(ctx, addr, s.Close)
}

// Close closes every socket (1001), stops the built-in listener and
// waits for every goroutine the Server started. It is idempotent; REST
// calls and handshakes after it get 503.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	conns := s.detachAllLocked("")
	s.mu.Unlock()
	s.cancel()

	s.web.Shutdown()
	for _, c := range conns {
		c.shutdown(websocket.StatusGoingAway, "server shutting down")
	}
	stopped := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(stopped)
	}()
	grace := time.NewTimer(2 * time.Second)
	defer grace.Stop()
	select {
	case <-stopped:
	case <-grace.C:
		for _, c := range conns {
			c.closeNow()
		}
		<-stopped
	}
}

// URL returns the base URL after Start or ListenAndServe, else "".
func (s *Server) URL() string { return s.web.URL() }

// SocketURL returns ws://host/ws without query parameters, or "" before
// Start.
func (s *Server) SocketURL() string {
	u := s.URL()
	if u == "" {
		return ""
	}
	return "ws" + strings.TrimPrefix(u, "http") + SocketPath
}

// ConnectorToken returns the connector token (the X-Token value).
func (s *Server) ConnectorToken() string { return s.opts.ConnectorToken }

// Host returns the registered host identifier (an X-Host value).
func (s *Server) Host() string { return s.opts.Host }

// nowLocked returns a UTC time, truncated to microseconds (the wire
// precision), strictly after every time it returned before, so event
// timestamps of one server never go backwards.
func (s *Server) nowLocked() time.Time {
	t := time.Now().UTC().Truncate(time.Microsecond)
	if !t.After(s.lastTime) {
		t = s.lastTime.Add(time.Microsecond)
	}
	s.lastTime = t
	return t
}

// idleLoop ends sessions idle for Options.IdleTimeout. One goroutine
// for every session: a session costs no timer of its own.
func (s *Server) idleLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.opts.IdleCheck)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case now := <-t.C:
			s.mu.Lock()
			for sess := range s.live {
				if now.Sub(sess.lastActive) >= s.opts.IdleTimeout {
					s.endLocked(sess, ReasonUserAbandoned)
				}
			}
			s.mu.Unlock()
		}
	}
}
