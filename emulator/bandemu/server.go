package bandemu

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

// Server is an in-process Band platform: the agent REST API under
// /api/v1/agent/ and the Phoenix Channels (v2) WebSocket at SocketPath.
// All methods are safe for concurrent use.
type Server struct {
	opts    Options
	log     zerolog.Logger
	ownerID string
	mux     *http.ServeMux

	// ctx is cancelled by Close; it bounds REST delays and socket writes.
	ctx    context.Context
	cancel context.CancelFunc
	// wg counts socket goroutines: the reader (the upgraded HTTP
	// handler) and the on-demand writer of every connection.
	wg sync.WaitGroup

	reqSeq          atomic.Uint64
	dials           emuhttp.Arrivals // every socket upgrade request, for DialStats
	stallHeartbeats atomic.Bool

	web *emuhttp.Server // the built-in listener

	// mu guards the domain state and the socket registry below. It is
	// never held across a network write.
	mu              sync.Mutex
	closed          bool
	lastTime        time.Time
	seq             int64
	defaultAgent    *agentState
	agents          map[string]*agentState
	agentOrder      []*agentState
	keys            map[string]*agentState
	users           map[string]*userState
	userOrder       []*userState
	handles         map[string]string // handle -> user or agent id
	rooms           map[string]*roomState
	roomOrder       []*roomState
	messages        map[string]*messageState
	contactRequests []*contactRequestState
	conns           map[*wsConn]struct{}
	pushesOff       bool
	requests        []RequestRecord
	faults          faultState
	correlation     uint64
}

// New returns a Server with one agent described by opts. It does not
// listen: use [Server.Start], [Server.ListenAndServe], or mount
// [Server.Handler] on a server of your own. Call [Server.Close] when
// done.
func New(opts Options) *Server {
	opts = opts.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		opts:     opts,
		log:      *opts.Logger,
		ownerID:  newID(),
		mux:      http.NewServeMux(),
		ctx:      ctx,
		cancel:   cancel,
		agents:   map[string]*agentState{},
		keys:     map[string]*agentState{},
		users:    map[string]*userState{},
		handles:  map[string]string{},
		rooms:    map[string]*roomState{},
		messages: map[string]*messageState{},
		conns:    map[*wsConn]struct{}{},
	}
	s.defaultAgent = s.addAgentLocked(Agent{ID: opts.AgentID, Name: opts.AgentName,
		Handle: opts.AgentHandle, Description: opts.AgentDescription, APIKey: opts.APIKey})
	s.routes()
	s.web = emuhttp.New("bandemu", s.Handler(), func(url string) {
		s.log.Info().Str("url", url).Msg("band emulator listening")
	})
	return s
}

// Handler returns the HTTP handler serving both the REST API and the
// WebSocket endpoint.
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == SocketPath {
			s.handleSocket(w, r)
			return
		}
		s.mux.ServeHTTP(w, r)
	})
}

// Start listens on a random 127.0.0.1 port and serves in the
// background. It returns the base URL, e.g. "http://127.0.0.1:41234".
func (s *Server) Start() (url string, err error) { return s.web.Start() }

// ListenAndServe serves on addr until ctx is done, then closes the
// Server. It returns nil after a shutdown caused by ctx.
func (s *Server) ListenAndServe(ctx context.Context, addr string) error {
	return s.web.ListenAndServe(ctx, addr, s.Close)
}

// Close closes every socket (code 1001), stops the built-in listener
// and waits for every goroutine the Server started. It is idempotent;
// REST calls after it get 503.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	conns := s.detachAllLocked()
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

// SocketURL returns the full WebSocket URL (ws://host/api/v1/socket/websocket)
// without query parameters, or "" before Start.
func (s *Server) SocketURL() string {
	u := s.URL()
	if u == "" {
		return ""
	}
	return "ws" + strings.TrimPrefix(u, "http") + SocketPath
}

// AgentID returns the default agent's id.
func (s *Server) AgentID() string { return s.opts.AgentID }

// APIKey returns the default agent's API key.
func (s *Server) APIKey() string { return s.opts.APIKey }

// Agent returns the default agent.
func (s *Server) Agent() Agent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.defaultAgent.Agent
}

// AddAgent creates another agent with a random id and key. Each agent
// has its own socket slot, rooms and processing state.
func (s *Server) AddAgent(name string) Agent {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.addAgentLocked(Agent{ID: newID(), Name: name, Handle: "emulator/" + slug(name),
		Description: "Band emulator agent", APIKey: newAPIKey()})
	return a.Agent
}
