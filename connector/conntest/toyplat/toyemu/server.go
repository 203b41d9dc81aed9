package toyemu

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Options configure a [Server]; the zero value works.
type Options struct {
	// Token is the bot's bearer token, default a random one (see [Server.Token]).
	Token string
	// KeepAlive is the interval of ": keepalive" comments on a stream, default 15s.
	KeepAlive time.Duration
}

// Server is one emulated toy platform with one bot.
type Server struct {
	opts Options
	srv  *http.Server
	ln   net.Listener
	url  string

	mu      sync.Mutex
	closed  bool
	done    chan struct{}  // closed by Close
	wg      sync.WaitGroup // handlers and the serve loop
	log     []event        // the bot's event log; seq = index+1
	changed chan struct{}  // closed and replaced when log grows
	streams map[*stream]struct{}
	convs   map[string]*conversation
	order   []string // conversation ids, oldest first
	posts   map[string]*Post
	idem    map[string]Post // Idempotency-Key → the post it created
	seq     int             // id counter
	fail    []fault         // next REST calls' faults, in order
}

type event struct {
	typ  string
	data []byte
}

type stream struct {
	kill    chan struct{} // closed by DropStreams
	killed  bool          // set with kill, under Server.mu: write nothing more
	garbage int           // garbage frames to write (guarded by Server.mu)
}

type fault struct {
	status     int // 0: hang up
	retryAfter time.Duration
}

type conversation struct {
	Conversation
	bot []Post
}

// Conversation is a chat room the bot is in.
type Conversation struct {
	ID    string `json:"id"`
	Title string `json:"title"`
}

// Post is one message in a conversation.
type Post struct {
	ID           string    `json:"id"`
	Conversation string    `json:"conversation"`
	Author       string    `json:"author"`
	Text         string    `json:"text"`
	InReplyTo    string    `json:"in_reply_to,omitempty"`
	At           time.Time `json:"at"`
	progress     []string
}

// BotAuthor is the author of the bot's own posts.
const BotAuthor = "bot"

// New returns a server; call Start.
func New(o Options) *Server {
	if o.Token == "" {
		o.Token = "toy-" + rand.Text()
	}
	if o.KeepAlive <= 0 {
		o.KeepAlive = 15 * time.Second
	}
	s := &Server{opts: o, done: make(chan struct{}), changed: make(chan struct{}),
		streams: map[*stream]struct{}{}, convs: map[string]*conversation{}, posts: map[string]*Post{}, idem: map[string]Post{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/events", s.handle(s.serveEvents))
	mux.HandleFunc("POST /v1/conversations/{conv}/posts", s.handle(s.servePost))
	mux.HandleFunc("PUT /v1/posts/{post}/progress", s.handle(s.serveProgress))
	mux.HandleFunc("GET /v1/conversations", s.handle(s.serveConversations))
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	return s
}

// Start listens on 127.0.0.1 and returns the base URL.
func (s *Server) Start() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("toyemu: listen: %w", err)
	}
	s.ln, s.url = ln, "http://"+ln.Addr().String()
	s.wg.Go(func() { _ = s.srv.Serve(ln) })
	return s.url, nil
}

// URL is the base URL of a started server.
func (s *Server) URL() string { return s.url }

// Token is the bot's bearer token.
func (s *Server) Token() string { return s.opts.Token }

// Close stops the server and waits for every handler; it is idempotent.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	close(s.done)
	s.mu.Unlock()
	_ = s.srv.Close()
	s.wg.Wait()
}

// handle checks the token and the fault knobs, and tracks the handler.
func (s *Server) handle(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			problem(w, http.StatusServiceUnavailable, "closing", "the server is shutting down", 0)
			return
		}
		s.wg.Add(1)
		var f *fault
		if r.URL.Path != "/v1/events" && len(s.fail) > 0 {
			f = &s.fail[0]
			s.fail = s.fail[1:]
		}
		s.mu.Unlock()
		defer s.wg.Done()
		if r.Header.Get("Authorization") != "Bearer "+s.opts.Token {
			problem(w, http.StatusUnauthorized, "unauthorized", "a valid bearer token is required", 0)
			return
		}
		if f != nil && f.status == 0 {
			panic(http.ErrAbortHandler) // net/http closes the connection, no answer
		}
		if f != nil {
			problem(w, f.status, slug(f.status), "injected failure", f.retryAfter)
			return
		}
		h(w, r)
	}
}

func slug(status int) string {
	return strings.ReplaceAll(strings.ToLower(http.StatusText(status)), " ", "_")
}

// problem writes an RFC 9457 problem document.
func problem(w http.ResponseWriter, status int, typ, title string, retryAfter time.Duration) {
	w.Header().Set("Content-Type", "application/problem+json")
	if retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((retryAfter+time.Second-1)/time.Second)))
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"type": typ, "title": title, "status": status})
}

// appendLocked adds an event to the log and wakes the streams.
func (s *Server) appendLocked(typ string, v any) {
	b, _ := json.Marshal(v) // plain structs: cannot fail
	s.log = append(s.log, event{typ: typ, data: b})
	close(s.changed)
	s.changed = make(chan struct{})
}

// serveEvents streams the log from Last-Event-ID on.
func (s *Server) serveEvents(w http.ResponseWriter, r *http.Request) {
	after := 0
	if v := r.Header.Get("Last-Event-ID"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			problem(w, http.StatusBadRequest, "invalid", "Last-Event-ID is not a sequence number", 0)
			return
		}
		after = n
	}
	flusher, ok := w.(http.Flusher)
	if !ok {
		problem(w, http.StatusInternalServerError, "internal", "streaming unsupported", 0)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	flusher.Flush()

	st := &stream{kill: make(chan struct{})}
	s.mu.Lock()
	s.streams[st] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.streams, st)
		s.mu.Unlock()
	}()
	keep := time.NewTicker(s.opts.KeepAlive)
	defer keep.Stop()
	for {
		s.mu.Lock()
		after = min(after, len(s.log))
		evs := s.log[after:]
		garbage := st.garbage
		st.garbage = 0
		changed, killed := s.changed, st.killed
		s.mu.Unlock()
		if killed { // nothing logged after DropStreams may reach this stream
			panic(http.ErrAbortHandler)
		}
		var b strings.Builder
		for range garbage {
			b.WriteString("event: post\ndata: {\"id\": oops\n\n")
		}
		for i, ev := range evs {
			fmt.Fprintf(&b, "id: %d\nevent: %s\ndata: %s\n\n", after+i+1, ev.typ, ev.data)
		}
		after += len(evs)
		if b.Len() > 0 {
			if _, err := w.Write([]byte(b.String())); err != nil {
				return
			}
			flusher.Flush()
		}
		select {
		case <-changed:
		case <-st.kill:
			panic(http.ErrAbortHandler) // cut mid-body: the client sees an unexpected EOF
		case <-keep.C:
			if _, err := w.Write([]byte(": keepalive\n\n")); err != nil {
				return
			}
			flusher.Flush()
		case <-r.Context().Done():
			return
		case <-s.done:
			return
		}
	}
}

func (s *Server) nextIDLocked(prefix string) string {
	s.seq++
	return prefix + "-" + strconv.Itoa(s.seq)
}

func (s *Server) servePost(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Text      string `json:"text"`
		InReplyTo string `json:"in_reply_to"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&body); err != nil {
		problem(w, http.StatusBadRequest, "invalid", "the body is not a JSON object", 0)
		return
	}
	if strings.TrimSpace(body.Text) == "" {
		problem(w, http.StatusBadRequest, "invalid", "text is empty", 0)
		return
	}
	key := r.Header.Get("Idempotency-Key")
	s.mu.Lock()
	c := s.convs[r.PathValue("conv")]
	if c == nil {
		s.mu.Unlock()
		problem(w, http.StatusNotFound, "not_found", "no such conversation", 0)
		return
	}
	p, again := s.idem[key]
	if !again || key == "" {
		p = Post{ID: s.nextIDLocked("p"), Conversation: c.ID, Author: BotAuthor, Text: body.Text, InReplyTo: body.InReplyTo, At: time.Now().UTC()}
		c.bot = append(c.bot, p)
		s.posts[p.ID] = &p
		if key != "" {
			s.idem[key] = p
		}
	}
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_ = json.NewEncoder(w).Encode(p)
}

// Stages of [Server.Progress].
const (
	StageSeen    = "seen"
	StageDone    = "done"
	StageDropped = "dropped"
)

func (s *Server) serveProgress(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Stage string `json:"stage"`
		Note  string `json:"note"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&body); err != nil {
		problem(w, http.StatusBadRequest, "invalid", "the body is not a JSON object", 0)
		return
	}
	switch body.Stage {
	case StageSeen, StageDone, StageDropped:
	default:
		problem(w, http.StatusBadRequest, "invalid", "stage is not seen, done or dropped", 0)
		return
	}
	s.mu.Lock()
	p := s.posts[r.PathValue("post")]
	if p == nil || p.Author == BotAuthor {
		s.mu.Unlock()
		problem(w, http.StatusNotFound, "not_found", "no such post from a human", 0)
		return
	}
	p.progress = append(p.progress, body.Stage)
	s.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) serveConversations(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	out := make([]Conversation, 0, len(s.order))
	for _, id := range s.order {
		out = append(out, s.convs[id].Conversation)
	}
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"conversations": out})
}
