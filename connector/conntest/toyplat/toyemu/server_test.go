package toyemu

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// sse opens the event stream and returns a function reading the next
// "id/event/data" block (comments skipped), and a stop function.
func sse(t *testing.T, s *Server, lastID string) (next func() (id, typ, data string), stop func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL()+"/v1/events", nil)
	req.Header.Set("Authorization", "Bearer "+s.Token())
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream answered %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	r := bufio.NewReader(resp.Body)
	next = func() (id, typ, data string) {
		t.Helper()
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("stream: %v", err)
			}
			line = strings.TrimSuffix(line, "\n")
			switch {
			case line == "" && (typ != "" || data != ""):
				return id, typ, data
			case strings.HasPrefix(line, "id: "):
				id = line[4:]
			case strings.HasPrefix(line, "event: "):
				typ = line[7:]
			case strings.HasPrefix(line, "data: "):
				data = line[6:]
			}
		}
	}
	return next, func() { cancel(); resp.Body.Close() }
}

func call(t *testing.T, s *Server, method, path, body string, hdr map[string]string) (*http.Response, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, s.URL()+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+s.Token())
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return resp, m
}

func newServer(t *testing.T) *Server {
	s := New(Options{})
	if _, err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func TestStreamResumeAndGarbage(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	c := s.AddConversation("one")
	p1 := s.Post(c.ID, "ada", "hello")
	next, stop := sse(t, s, "")
	if id, typ, _ := next(); id != "1" || typ != "joined" {
		t.Fatalf("first event %s %s", id, typ)
	}
	id, typ, data := next()
	var got Post
	if err := json.Unmarshal([]byte(data), &got); err != nil || id != "2" || typ != "post" || got.ID != p1.ID || got.Conversation != c.ID {
		t.Fatalf("second event %s %s %s (%v)", id, typ, data, err)
	}
	s.SendGarbage()
	if _, _, data := next(); json.Valid([]byte(data)) {
		t.Fatalf("garbage is valid JSON: %s", data)
	}
	s.DropStreams()
	stop()
	p2 := s.Post(c.ID, "ada", "again")
	next, stop = sse(t, s, "2") // resume after the first post
	defer stop()
	if id, _, data := next(); id != "3" || !strings.Contains(data, p2.ID) {
		t.Fatalf("resumed with %s %s", id, data)
	}
}

func TestPostsProgressAndFaults(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	c := s.AddConversation("one")
	h := s.Post(c.ID, "ada", "hi")
	path := "/v1/conversations/" + c.ID + "/posts"
	key := map[string]string{"Idempotency-Key": "k1"}
	r1, a := call(t, s, "POST", path, `{"text":"answer"}`, key)
	r2, b := call(t, s, "POST", path, `{"text":"answer"}`, key)
	if r1.StatusCode != 201 || r2.StatusCode != 201 || a["id"] != b["id"] || len(s.BotPosts(c.ID)) != 1 {
		t.Fatalf("idempotent post: %d %d %v %v, %d posts", r1.StatusCode, r2.StatusCode, a, b, len(s.BotPosts(c.ID)))
	}
	if r, m := call(t, s, "POST", path, `{"text":" "}`, nil); r.StatusCode != 400 || m["type"] != "invalid" {
		t.Fatalf("blank text: %d %v", r.StatusCode, m)
	}
	if r, _ := call(t, s, "PUT", "/v1/posts/"+h.ID+"/progress", `{"stage":"seen"}`, nil); r.StatusCode != 204 {
		t.Fatalf("progress: %d", r.StatusCode)
	}
	if r, _ := call(t, s, "PUT", "/v1/posts/"+h.ID+"/progress", `{"stage":"later"}`, nil); r.StatusCode != 400 {
		t.Fatalf("bad stage: %d", r.StatusCode)
	}
	if got := s.Progress(h.ID); len(got) != 1 || got[0] != StageSeen {
		t.Fatalf("progress %v", got)
	}
	s.FailNext(http.StatusTooManyRequests, 1500*time.Millisecond)
	r, m := call(t, s, "GET", "/v1/conversations", "", nil)
	if r.StatusCode != 429 || r.Header.Get("Retry-After") != "2" || r.Header.Get("Content-Type") != "application/problem+json" || m["status"] != 429.0 {
		t.Fatalf("injected 429: %d %q %v", r.StatusCode, r.Header.Get("Retry-After"), m)
	}
	s.HangUpNext()
	req, _ := http.NewRequest("GET", s.URL()+"/v1/conversations", nil)
	req.Header.Set("Authorization", "Bearer "+s.Token())
	// A fresh connection: net/http replays a GET that fails on a reused one.
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	if resp, err := fresh.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("hung-up call answered %d", resp.StatusCode)
	}
	if r, _ := call(t, s, "GET", "/v1/conversations", "", map[string]string{"Authorization": "Bearer nope"}); r.StatusCode != 401 {
		t.Fatalf("bad token: %d", r.StatusCode)
	}
}
