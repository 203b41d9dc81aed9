package chatapiemu

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/bridgeworks/bridge/emulator/emuhttp"
	"github.com/rs/zerolog"
)

// Server is an in-process Chat API platform. All methods are safe for
// concurrent use.
type Server struct {
	opts Options
	log  zerolog.Logger
	mux  *http.ServeMux

	// ctx is cancelled by Close; every wait inside a handler (delays,
	// stalls, slow fragments) selects on it.
	ctx    context.Context
	cancel context.CancelFunc
	// wg counts running API handlers, so Close can wait for them.
	wg sync.WaitGroup

	web *emuhttp.Server // the built-in listener

	// mu guards everything below. It is never held across a network
	// write or a wait.
	mu            sync.Mutex
	closed        bool
	agents        map[string]*agentState
	agentOrder    []*agentState
	teams         map[string]*teamState
	teamOrder     []*teamState
	keys          map[string]*keyState
	defaultScript Script
	markReads     []MarkReadCall
	requests      []RequestRecord
	faults        faultState
	rateLimit     int
	rateWindow    time.Duration
	streams       int // active SSE streams
	stalled       int // streams waiting in a stall
}

// New returns a Server with one agent (Options.AgentID) and the global
// key Options.APIKey. It does not listen: use [Server.Start],
// [Server.ListenAndServe], or mount [Server.Handler] yourself. Call
// [Server.Close] when done.
func New(opts Options) *Server {
	opts = opts.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		opts:       opts,
		log:        *opts.Logger,
		mux:        http.NewServeMux(),
		ctx:        ctx,
		cancel:     cancel,
		agents:     map[string]*agentState{},
		teams:      map[string]*teamState{},
		keys:       map[string]*keyState{opts.APIKey: {kind: keyGlobal}},
		rateLimit:  opts.RateLimit,
		rateWindow: opts.RateWindow,
	}
	s.faults.stallRelease = make(chan struct{})
	s.addAgentLocked(Agent{ID: opts.AgentID, Name: opts.AgentName, APIKey: opts.AgentKey})
	s.routes()
	s.web = emuhttp.New("chatapiemu", s.Handler(), func(url string) {
		s.log.Info().Str("url", url).Msg("chat api emulator listening")
	})
	return s
}

// Handler returns the HTTP handler serving the API.
func (s *Server) Handler() http.Handler { return s.mux }

// Start listens on a random 127.0.0.1 port and serves in the
// background. It returns the server URL, e.g. "http://127.0.0.1:41234";
// the API base URL is [Server.BaseURL].
func (s *Server) Start() (url string, err error) { return s.web.Start() }

// ListenAndServe serves on addr until ctx is done, then closes the
// Server. It returns nil after a shutdown caused by ctx.
func (s *Server) ListenAndServe(ctx context.Context, addr string) error {
	return s.web.ListenAndServe(ctx, addr, s.Close)
}

// Close ends every stream (stalled ones included), stops the built-in
// listener and waits for every handler. It is idempotent; calls after it
// get 503.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.mu.Unlock()
	s.cancel()

	s.web.Shutdown()
	s.wg.Wait()
}

// URL returns the server URL after Start or ListenAndServe, else "".
func (s *Server) URL() string { return s.web.URL() }

// BaseURL returns the API base URL (URL + BasePath, e.g.
// "http://127.0.0.1:41234/api"), what a client prefixes to
// "/agents/:id/chat". "" before Start.
func (s *Server) BaseURL() string {
	u := s.URL()
	if u == "" {
		return ""
	}
	return u + s.opts.BasePath
}

// APIKey returns the global key.
func (s *Server) APIKey() string { return s.opts.APIKey }

// AgentID returns the id of the agent the Server started with.
func (s *Server) AgentID() string { return s.opts.AgentID }

func (s *Server) addAgentLocked(a Agent) *agentState {
	st := &agentState{Agent: a}
	s.agents[a.ID] = st
	s.agentOrder = append(s.agentOrder, st)
	s.keys[a.APIKey] = &keyState{kind: keyAgent, id: a.ID}
	return st
}
