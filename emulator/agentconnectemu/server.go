package agentconnectemu

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bridgeworks/bridge/emulator/emuhttp"
	"github.com/coder/websocket"
	"github.com/rs/zerolog"
)

// Server is an in-process AgentConnect demo API: form login issuing
// HS256 JWTs, sessions REST and the chat WebSocket with a scripted AI.
// All methods are safe for concurrent use.
type Server struct {
	opts Options
	log  zerolog.Logger
	mux  *http.ServeMux

	// ctx is cancelled by Close; it ends AI waits, sweeps and workers.
	ctx    context.Context
	cancel context.CancelFunc
	// wg counts every goroutine the Server starts: socket readers (the
	// upgraded handlers), socket writers, agent_agent workers, the sweep.
	wg sync.WaitGroup

	stallPings atomic.Bool

	web *emuhttp.Server // the built-in listener

	// mu guards everything below. It is never held across a network
	// write or a wait.
	mu           sync.Mutex
	closed       bool
	users        map[string]*user
	issued       []issuedToken // oldest first, pruned once expired
	expiredJTI   map[string]struct{}
	sessions     map[string]*session
	sessionOrder []*session
	windows      map[string]*rateWindow
	missingKeys  map[string]bool // providers without an API key
	rejectShakes int
	routeFaults  []routeFault
}

// New returns a Server with the user [DefaultUser] (password
// [Options.Password]). It does not listen: use [Server.Start],
// [Server.ListenAndServe], or mount [Server.Handler]. Call
// [Server.Close] when done.
func New(opts Options) *Server {
	opts = opts.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		opts:        opts,
		log:         *opts.Logger,
		mux:         http.NewServeMux(),
		ctx:         ctx,
		cancel:      cancel,
		users:       map[string]*user{DefaultUser: {name: DefaultUser, password: opts.Password}},
		expiredJTI:  map[string]struct{}{},
		sessions:    map[string]*session{},
		windows:     map[string]*rateWindow{},
		missingKeys: map[string]bool{},
	}
	s.routes()
	s.web = emuhttp.New("agentconnectemu", s.Handler(), func(url string) {
		s.log.Info().Str("url", url).Msg("agentconnect emulator listening")
	})
	if s.opts.MaxInactive > 0 {
		s.wg.Add(1)
		go s.sweepLoop()
	}
	return s
}

// Handler returns the HTTP handler serving the REST API and the
// WebSocket endpoint.
func (s *Server) Handler() http.Handler { return s.mux }

// Start listens on a random 127.0.0.1 port and serves in the
// background. It returns the base URL, e.g. "http://127.0.0.1:41234".
func (s *Server) Start() (url string, err error) { return s.web.Start() }

// ListenAndServe serves on addr until ctx is done, then closes the
// Server. It returns nil after a shutdown caused by ctx.
func (s *Server) ListenAndServe(ctx context.Context, addr string) error {
	return s.web.ListenAndServe(ctx, addr, s.Close)
}

// Close closes every socket (1001), stops the listener and waits for
// every goroutine the Server started. It is idempotent; REST calls
// after it get 503.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	var conns []*conn
	for _, sess := range s.sessionOrder {
		s.stopSessionLocked(sess)
		for c := range sess.conns {
			conns = append(conns, c)
		}
	}
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

// SocketURL returns ws://host/api/chat/ws/{sessionID} without the
// token, or "" before Start.
func (s *Server) SocketURL(sessionID string) string {
	u := s.URL()
	if u == "" {
		return ""
	}
	return "ws" + strings.TrimPrefix(u, "http") + SocketPrefix + sessionID
}

// Password returns the password of [DefaultUser].
func (s *Server) Password() string { return s.opts.Password }

// sweepLoop ends sessions idle longer than MaxInactive, every
// CleanupInterval (agentconnect.md §4.6).
func (s *Server) sweepLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.opts.CleanupInterval)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case now := <-t.C:
			s.mu.Lock()
			for _, sess := range s.sessionOrder {
				if sess.live() && now.Sub(sess.lastActivity) > s.opts.MaxInactive {
					s.endSessionLocked(sess, endExpired, NoticeInactiveClosed)
				}
			}
			s.mu.Unlock()
		}
	}
}
