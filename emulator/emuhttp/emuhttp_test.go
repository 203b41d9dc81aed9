package emuhttp

import (
	"context"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// The tests count goroutines, so none of them runs in parallel.

const waitFor = 10 * time.Second

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// noLeaks fails t unless the goroutine count gets back to base.
func noLeaks(t *testing.T, base int) {
	t.Helper()
	eventually(t, "goroutines to end", func() bool { return runtime.NumGoroutine() <= base })
}

func get(c *http.Client, url string) (string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func hello(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "hello") }

func TestStartServeShutdown(t *testing.T) {
	base := runtime.NumGoroutine()
	var logged string
	s := New("testemu", http.HandlerFunc(hello), func(url string) { logged = url })
	if s.URL() != "" {
		t.Fatalf("URL before Start = %q, want empty", s.URL())
	}
	url, err := s.Start()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(url, "http://127.0.0.1:") || s.URL() != url || logged != url {
		t.Fatalf("Start = %q, URL = %q, listening got %q", url, s.URL(), logged)
	}
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	if body, err := get(client, url); err != nil || body != "hello" {
		t.Fatalf("GET = %q, %v", body, err)
	}
	if _, err := s.Start(); err == nil || !strings.Contains(err.Error(), "testemu: server already started") {
		t.Fatalf("second Start: %v, want already started", err)
	}

	s.Shutdown() // closes the client's idle keep-alive connection too
	if _, err := get(client, url); err == nil {
		t.Fatal("GET after Shutdown succeeded")
	}
	if _, err := s.Start(); err == nil {
		t.Fatal("Start after Shutdown succeeded")
	}
	s.Shutdown() // idempotent
	client.CloseIdleConnections()
	noLeaks(t, base)
}

func TestShutdownBeforeStart(t *testing.T) {
	s := New("testemu", http.HandlerFunc(hello), nil)
	s.Shutdown()
	if _, err := s.Start(); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Fatalf("Start after Shutdown: %v, want an error", err)
	}
}

func TestListenAndServeUntilContextEnds(t *testing.T) {
	base := runtime.NumGoroutine()
	s := New("testemu", http.HandlerFunc(hello), nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stopped := make(chan struct{})
	result := make(chan error, 1)
	go func() {
		result <- s.ListenAndServe(ctx, "127.0.0.1:0", func() { s.Shutdown(); close(stopped) })
	}()
	eventually(t, "the listener", func() bool { return s.URL() != "" })
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	if body, err := get(client, s.URL()); err != nil || body != "hello" {
		t.Fatalf("GET = %q, %v", body, err)
	}
	cancel()
	select {
	case err := <-result:
		if err != nil {
			t.Fatalf("ListenAndServe = %v, want nil after ctx ends", err)
		}
	case <-time.After(waitFor):
		t.Fatal("ListenAndServe did not return after ctx ended")
	}
	select {
	case <-stopped:
	default:
		t.Fatal("stop was not called")
	}
	client.CloseIdleConnections()
	noLeaks(t, base)
}

func TestListenAndServeBadAddress(t *testing.T) {
	s := New("testemu", http.HandlerFunc(hello), nil)
	err := s.ListenAndServe(context.Background(), "127.0.0.1:notaport", nil)
	if err == nil || !strings.HasPrefix(err.Error(), "testemu: listen:") {
		t.Fatalf("ListenAndServe = %v, want a listen error", err)
	}
}

// A WebSocket upgrade in flight when Shutdown starts completes (the
// handler answers 101 and takes the connection over), Shutdown then
// returns without waiting for the hijacked connection, and that
// connection keeps working until its owner closes it. http.Server.Close
// would cut the upgrade.
func TestShutdownLetsUpgradeInFlightFinish(t *testing.T) {
	base := runtime.NumGoroutine()
	entered, release := make(chan struct{}), make(chan struct{})
	var handlers sync.WaitGroup
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handlers.Add(1)
		defer handlers.Done()
		close(entered)
		<-release
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for { // echo until the client closes
			typ, b, err := c.Read(context.Background())
			if err != nil {
				return
			}
			if c.Write(context.Background(), typ, b) != nil {
				return
			}
		}
	})
	s := New("testemu", h, nil)
	url, err := s.Start()
	if err != nil {
		t.Fatal(err)
	}

	type dialed struct {
		c   *websocket.Conn
		err error
	}
	transport := &http.Transport{}
	defer transport.CloseIdleConnections()
	dial := make(chan dialed, 1)
	go func() {
		c, _, err := websocket.Dial(context.Background(), "ws"+strings.TrimPrefix(url, "http"),
			&websocket.DialOptions{HTTPClient: &http.Client{Transport: transport}})
		dial <- dialed{c, err}
	}()
	<-entered

	shut := make(chan struct{})
	go func() {
		s.Shutdown()
		close(shut)
	}()
	addr := strings.TrimPrefix(url, "http://")
	eventually(t, "the listener to close", func() bool {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return true
		}
		_ = c.Close()
		return false
	})
	close(release)

	d := <-dial
	if d.err != nil {
		t.Fatalf("upgrade in flight during Shutdown failed: %v", d.err)
	}
	defer d.c.CloseNow()
	echo := func(msg string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		if err := d.c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatalf("write %q: %v", msg, err)
		}
		_, b, err := d.c.Read(ctx)
		if err != nil || string(b) != msg {
			t.Fatalf("echo of %q = %q, %v", msg, b, err)
		}
	}
	echo("during shutdown")
	select {
	case <-shut:
	case <-time.After(waitFor):
		t.Fatal("Shutdown waits for a hijacked connection")
	}
	echo("after shutdown") // the hijacked connection is its owner's to close

	if err := d.c.Close(websocket.StatusNormalClosure, "done"); err != nil {
		t.Fatalf("close: %v", err)
	}
	handlers.Wait()
	transport.CloseIdleConnections()
	noLeaks(t, base)
}

// A handler that outlives the grace period is cut, and Shutdown returns.
func TestShutdownCutsStuckHandler(t *testing.T) {
	base := runtime.NumGoroutine()
	entered, release := make(chan struct{}), make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
	})
	s := New("testemu", h, nil)
	s.grace = 50 * time.Millisecond
	url, err := s.Start()
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	got := make(chan error, 1)
	go func() {
		_, err := get(client, url)
		got <- err
	}()
	<-entered

	shut := make(chan struct{})
	go func() {
		s.Shutdown()
		close(shut)
	}()
	select {
	case <-shut:
	case <-time.After(waitFor):
		t.Fatal("Shutdown did not return after the grace period")
	}
	if err := <-got; err == nil {
		t.Fatalf("GET of a cut handler = %v, want a connection error", err)
	}
	close(release)
	client.CloseIdleConnections()
	noLeaks(t, base)
}
