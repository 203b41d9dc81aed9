package chatapiemu

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestFailNext(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{})
	path := "/agents/" + s.AgentID() + "/chat"
	body := map[string]any{"message": "hi"}
	s.FailNext(1, http.StatusTooManyRequests, 1500*time.Millisecond)
	s.FailNext(1, http.StatusServiceUnavailable, 0)
	r := do(t, s, "POST", path, s.APIKey(), body)
	if r.status != 429 || r.header.Get("Retry-After") != "2" || r.detail(t) == "" {
		t.Fatalf("first: %d Retry-After %q %s", r.status, r.header.Get("Retry-After"), r.body)
	}
	r = do(t, s, "POST", path, s.APIKey(), body)
	if r.status != 503 || r.header.Get("Retry-After") != "" || r.detail(t) != "Service Unavailable" {
		t.Fatalf("second: %d %s", r.status, r.body)
	}
	if r = do(t, s, "POST", path, s.APIKey(), body); r.status != 200 {
		t.Fatalf("third: %d", r.status)
	}
	if got := len(s.History(s.AgentID())); got != 2 || s.ChatPosts(s.AgentID()) != 3 {
		t.Fatalf("%d turns after 2 failures and a success, %d posts", got, s.ChatPosts(s.AgentID()))
	}

	// FailRoute leaves other routes alone; HangUpRoute answers nothing.
	s.FailRoute("POST", s.opts.BasePath+path+"/stream", 1, http.StatusBadGateway, 0)
	s.HangUpRoute("GET", s.opts.BasePath+"/agents/"+s.AgentID()+"/history", 1)
	if r = do(t, s, "POST", path, s.APIKey(), body); r.status != 200 {
		t.Fatalf("other route: %d", r.status)
	}
	if r = do(t, s, "POST", path+"/stream", s.APIKey(), body); r.status != 502 || r.detail(t) != "Bad Gateway" {
		t.Fatalf("failed route: %d %s", r.status, r.body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	req := newRequest(t, ctx, s, "GET", "/agents/"+s.AgentID()+"/history", s.APIKey(), nil)
	// A fresh connection: net/http retries an idempotent call that failed on a reused one.
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := fresh.Do(req)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("hung-up route answered %d", resp.StatusCode)
	}
	if r = do(t, s, "GET", "/agents/"+s.AgentID()+"/history", s.APIKey(), nil); r.status != 200 {
		t.Fatalf("after the hang-up: %d", r.status)
	}
	s.FailNext(5, 500, 0)
	s.ClearFaults()
	if r = do(t, s, "POST", path, s.APIKey(), body); r.status != 200 {
		t.Fatalf("after ClearFaults: %d", r.status)
	}
}

func TestRateLimitPerKey(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{RateLimit: 2, RateWindow: time.Minute})
	path := "/agents/" + s.AgentID() + "/history"
	for i := range 2 {
		if r := do(t, s, "GET", path, s.APIKey(), nil); r.status != 200 {
			t.Fatalf("call %d: %d", i, r.status)
		}
	}
	r := do(t, s, "GET", path, s.APIKey(), nil)
	ra, err := strconv.Atoi(r.header.Get("Retry-After"))
	if r.status != 429 || err != nil || ra < 1 || ra > 30 || !strings.Contains(r.detail(t), "Rate limit") {
		t.Fatalf("third call: %d Retry-After %q %s", r.status, r.header.Get("Retry-After"), r.body)
	}
	// Another key has its own bucket.
	if r := do(t, s, "GET", path, s.opts.AgentKey, nil); r.status != 200 {
		t.Fatalf("other key: %d", r.status)
	}
	s.SetRateLimit(0, 0)
	if r := do(t, s, "GET", path, s.APIKey(), nil); r.status != 200 {
		t.Fatalf("unlimited: %d", r.status)
	}
	s.SetRateLimit(1, time.Hour)
	do(t, s, "GET", path, s.APIKey(), nil)
	if r := do(t, s, "GET", path, s.APIKey(), nil); r.status != 429 || r.header.Get("Retry-After") != "3600" {
		t.Fatalf("1/hour: %d Retry-After %q", r.status, r.header.Get("Retry-After"))
	}
}

// TestStreamCut cuts a stream after 3 of 10 fragments: the client sees
// the connection end without done or [DONE], and the history holds one
// user turn and the whole reply, once.
func TestStreamCut(t *testing.T) {
	t.Parallel()
	for _, drop := range []bool{false, true} {
		s := newServer(t, Options{DropReplyOnCut: drop})
		id := s.AgentID()
		text := strings.Repeat("x", 100)
		s.SetScript(id, Script{Text: text, Fragments: 10})
		s.InjectStreamFault(id, StreamFault{Kind: StreamCut, After: 3})
		chunks, sawDone, err := openStream(t, s, id, s.APIKey(), "hi").readAll(t)
		if !errors.Is(err, io.ErrUnexpectedEOF) || sawDone {
			t.Fatalf("drop=%v: err %v, [DONE] %v", drop, err, sawDone)
		}
		if _, n := textOf(chunks, "text"); n != 3 || len(chunks) != 3 {
			t.Fatalf("drop=%v: chunks %+v", drop, chunks)
		}
		h := s.History(id)
		want := 2
		if drop {
			want = 1
		}
		if len(h) != want || h[0].Role != "user" || (!drop && h[1].Content != text) {
			t.Fatalf("drop=%v: history %+v", drop, h)
		}
		if s.ChatPosts(id) != 1 {
			t.Fatalf("posts %d", s.ChatPosts(id))
		}
		// The fault was spent: the next stream is whole.
		if _, sawDone, err := openStream(t, s, id, s.APIKey(), "again").readAll(t); err != nil || !sawDone {
			t.Fatalf("next stream: %v %v", err, sawDone)
		}
	}
}

func TestStreamStall(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{})
	id := s.AgentID()
	s.SetScript(id, Script{Text: "a b c d e"})
	s.InjectStreamFault(id, StreamFault{Kind: StreamStall, After: 2, Streams: 2})

	// Released: the rest of the stream follows.
	st := openStream(t, s, id, s.APIKey(), "one")
	for i := range 2 {
		if c, _, err := st.nextChunk(t); err != nil || c.Type != "text" {
			t.Fatalf("chunk %d: %+v %v", i, c, err)
		}
	}
	eventually(t, "stall", func() bool { return s.StalledStreams() == 1 })
	if len(s.History(id)) != 1 {
		t.Fatal("assistant turn recorded during the stall")
	}
	s.ReleaseStalls()
	rest, sawDone, err := st.readAll(t)
	if err != nil || !sawDone || len(rest) != 4 || rest[3].Type != "done" {
		t.Fatalf("after release: %+v %v %v", rest, sawDone, err)
	}

	// The client gives up: the stall ends, no reply is recorded.
	st = openStream(t, s, id, s.APIKey(), "two")
	eventually(t, "second stall", func() bool { return s.StalledStreams() == 1 })
	st.close()
	eventually(t, "stall ended", func() bool { return s.StalledStreams() == 0 && s.ActiveStreams() == 0 })
	if h := s.History(id); len(h) != 3 || h[2].Content != "two" {
		t.Fatalf("history %+v", h)
	}
}

func TestStreamErrorChunk(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{})
	id := s.AgentID()
	s.InjectStreamFault("", StreamFault{Kind: StreamError, After: 1, Message: "model overloaded"})
	chunks, sawDone, err := openStream(t, s, id, s.APIKey(), "hello world").readAll(t)
	if err != nil || !sawDone || len(chunks) != 2 {
		t.Fatalf("chunks %+v, [DONE] %v, err %v", chunks, sawDone, err)
	}
	if chunks[0].Type != "text" || chunks[1].Type != "error" || chunks[1].Content != "model overloaded" {
		t.Fatalf("chunks %+v", chunks)
	}
	if h := s.History(id); len(h) != 1 || h[0].Role != "user" {
		t.Fatalf("history %+v", h)
	}
}

func TestSlowStreamAndDelay(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{})
	const d = 20 * time.Millisecond
	s.SetScript("", Script{Text: "a b c", FragmentDelay: d})
	start := time.Now()
	if _, sawDone, err := openStream(t, s, s.AgentID(), s.APIKey(), "x").readAll(t); err != nil || !sawDone {
		t.Fatal(err)
	}
	if el := time.Since(start); el < 3*d {
		t.Fatalf("3 slow fragments took %v", el)
	}
	s.SetDelay(3 * d)
	start = time.Now()
	if r := do(t, s, "GET", "/agents/"+s.AgentID()+"/history", s.APIKey(), nil); r.status != 200 {
		t.Fatal(r.status)
	}
	if el := time.Since(start); el < 3*d {
		t.Fatalf("delayed call took %v", el)
	}
}

func TestMaxStreams(t *testing.T) {
	t.Parallel()
	s := newServer(t, Options{MaxStreams: 1})
	s.InjectStreamFault("", StreamFault{Kind: StreamStall})
	openStream(t, s, s.AgentID(), s.APIKey(), "one")
	eventually(t, "stall", func() bool { return s.StalledStreams() == 1 })
	r := do(t, s, "POST", "/agents/"+s.AgentID()+"/chat/stream", s.APIKey(), map[string]any{"message": "two"})
	if r.status != 503 || r.detail(t) != "Too many concurrent streams" {
		t.Fatalf("%d %s", r.status, r.body)
	}
}

// TestCloseEndsStalledStreams: Close returns promptly with a stream
// stalled and a call delayed, and the clients see their calls end.
func TestCloseEndsStalledStreams(t *testing.T) {
	t.Parallel()
	s := New(Options{})
	if _, err := s.Start(); err != nil {
		t.Fatal(err)
	}
	s.InjectStreamFault("", StreamFault{Kind: StreamStall, After: 1})
	st := openStream(t, s, s.AgentID(), s.APIKey(), "a b")
	eventually(t, "stall", func() bool { return s.StalledStreams() == 1 })
	closed := make(chan struct{})
	go func() {
		s.Close()
		s.Close() // idempotent
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(waitFor):
		t.Fatal("Close did not return")
	}
	if _, _, err := st.readAll(t); err == nil {
		t.Fatal("stalled stream ended cleanly after Close")
	}
	if s.ActiveStreams() != 0 {
		t.Fatal("streams left after Close")
	}
}
