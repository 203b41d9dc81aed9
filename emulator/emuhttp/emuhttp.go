package emuhttp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"
)

// shutdownGrace is how long Shutdown waits for requests in flight
// before it closes their connections.
const shutdownGrace = 2 * time.Second

// Server serves one handler on at most one listener in its lifetime.
// All methods are safe for concurrent use.
type Server struct {
	name      string
	handler   http.Handler
	listening func(url string)
	grace     time.Duration

	mu     sync.Mutex // guards the fields below
	closed bool
	srv    *http.Server
	url    string
	done   chan struct{} // closed when Serve has returned; err is set then
	err    error
}

// New returns a Server for handler. name prefixes its errors (e.g.
// "bandemu"); listening, if not nil, is called with the base URL once
// the listener is up (emulators log it).
func New(name string, handler http.Handler, listening func(url string)) *Server {
	return &Server{name: name, handler: handler, listening: listening, grace: shutdownGrace}
}

// Start listens on a random 127.0.0.1 port and serves in the
// background. It returns the base URL, e.g. "http://127.0.0.1:41234".
func (s *Server) Start() (url string, err error) {
	_, url, err = s.listen("127.0.0.1:0")
	return url, err
}

// ListenAndServe serves on addr until ctx is done or serving fails,
// then calls stop (nil means [Server.Shutdown]); an emulator passes its
// own Close, which must call Shutdown. It returns nil after a shutdown
// caused by ctx or by stop, else the serve error.
func (s *Server) ListenAndServe(ctx context.Context, addr string, stop func()) error {
	if stop == nil {
		stop = s.Shutdown
	}
	done, _, err := s.listen(addr)
	if err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		stop()
		return nil
	case <-done:
		stop()
		if errors.Is(s.err, http.ErrServerClosed) { // set before done closed
			return nil
		}
		return fmt.Errorf("%s: serve: %w", s.name, s.err)
	}
}

// listen starts serving on addr, tells listening, and returns the
// channel closed when serving ends and the base URL.
func (s *Server) listen(addr string) (done <-chan struct{}, url string, err error) {
	d, url, err := s.serve(addr)
	if err != nil {
		return nil, "", err
	}
	if s.listening != nil {
		s.listening(url)
	}
	return d, url, nil
}

func (s *Server) serve(addr string) (done chan struct{}, url string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.srv != nil {
		return nil, "", fmt.Errorf("%s: server already started or closed", s.name)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", fmt.Errorf("%s: listen: %w", s.name, err)
	}
	srv := &http.Server{Handler: s.handler, ReadHeaderTimeout: 10 * time.Second}
	s.srv = srv
	s.url = "http://" + ln.Addr().String()
	done = make(chan struct{})
	s.done = done
	go func() {
		s.err = srv.Serve(ln)
		close(done)
	}()
	return done, s.url, nil
}

// URL returns the base URL after Start or ListenAndServe, else "".
func (s *Server) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.url
}

// Shutdown stops the listener, lets requests in flight finish for up to
// two seconds, closes what is left (hijacked connections excepted) and
// waits for the serving goroutine. Start and ListenAndServe fail after
// it. It is idempotent.
func (s *Server) Shutdown() {
	s.mu.Lock()
	s.closed = true
	srv, done := s.srv, s.done
	s.mu.Unlock()
	if srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.grace)
	defer cancel()
	if srv.Shutdown(ctx) != nil {
		_ = srv.Close()
	}
	<-done
}
