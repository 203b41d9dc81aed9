package agentconnectemu

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// A small client for the tests, written from the protocol: plain
// net/http for REST, coder/websocket for the chat socket.

const waitFor = 10 * time.Second

func newServer(t *testing.T, opts Options) *Server {
	t.Helper()
	s := New(opts)
	if _, err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// eventually polls cond until it holds or the deadline passes.
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

type response struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

// do sends one request; body is sent as is, with contentType when set.
func do(t *testing.T, method, u, token, contentType, body string) response {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	r := response{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
	_ = json.Unmarshal(raw, &r.body)
	return r
}

func login(t *testing.T, s *Server, user, password string) response {
	t.Helper()
	form := url.Values{"username": {user}, "password": {password}}.Encode()
	return do(t, "POST", s.URL()+LoginPath, "", "application/x-www-form-urlencoded", form)
}

func mustLogin(t *testing.T, s *Server) string {
	t.Helper()
	r := login(t, s, DefaultUser, s.Password())
	tok, _ := r.body["access_token"].(string)
	if r.status != 200 || tok == "" {
		t.Fatalf("login: %d %s", r.status, r.raw)
	}
	return tok
}

func createSession(t *testing.T, s *Server, token, body string) response {
	t.Helper()
	return do(t, "POST", s.URL()+CreatePath, token, "application/json", body)
}

const humanBody = `{"session_type":"human_agent","agents":{"primary":{"provider":"groq","model":"llama-3.3-70b-versatile"}}}`

func mustSession(t *testing.T, s *Server, token string) string {
	t.Helper()
	r := createSession(t, s, token, humanBody)
	id, _ := r.body["session_id"].(string)
	if r.status != 200 || id == "" {
		t.Fatalf("create: %d %s", r.status, r.raw)
	}
	return id
}

// wsClient reads every frame in the background.
type wsClient struct {
	t  *testing.T
	ws *websocket.Conn

	mu      sync.Mutex
	frames  []map[string]any
	raws    []string
	changed chan struct{}
	done    chan struct{}
	readErr error
}

func dial(t *testing.T, s *Server, sessionID, token string, header http.Header) (*wsClient, *http.Response, error) {
	t.Helper()
	u := s.SocketURL(sessionID)
	if token != "" {
		u += "?token=" + url.QueryEscape(token)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	ws, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPHeader: header})
	if err != nil {
		return nil, resp, err
	}
	ws.SetReadLimit(4 << 20)
	c := &wsClient{t: t, ws: ws, changed: make(chan struct{}), done: make(chan struct{})}
	go c.readLoop()
	t.Cleanup(func() {
		_ = ws.CloseNow()
		<-c.done
	})
	return c, resp, nil
}

func mustDial(t *testing.T, s *Server, sessionID, token string) *wsClient {
	t.Helper()
	c, _, err := dial(t, s, sessionID, token, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *wsClient) readLoop() {
	defer close(c.done)
	for {
		_, data, err := c.ws.Read(context.Background())
		c.mu.Lock()
		if err != nil {
			c.readErr = err
			close(c.changed)
			c.mu.Unlock()
			return
		}
		var f map[string]any
		_ = json.Unmarshal(data, &f)
		c.frames = append(c.frames, f)
		c.raws = append(c.raws, string(data))
		close(c.changed)
		c.changed = make(chan struct{})
		c.mu.Unlock()
	}
}

func (c *wsClient) send(raw string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := c.ws.Write(ctx, websocket.MessageText, []byte(raw)); err != nil {
		c.t.Fatal(err)
	}
}

func (c *wsClient) text(content string) {
	c.t.Helper()
	b, _ := json.Marshal(map[string]any{"type": "text", "content": content})
	c.send(string(b))
}

// waitFrame returns the first frame (index >= from) matching pred, and
// its index.
func (c *wsClient) waitFrame(what string, from int, pred func(map[string]any) bool) (map[string]any, int) {
	c.t.Helper()
	deadline := time.NewTimer(waitFor)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		for i := from; i < len(c.frames); i++ {
			if c.frames[i] != nil && pred(c.frames[i]) {
				c.mu.Unlock()
				return c.frames[i], i
			}
		}
		ch, err := c.changed, c.readErr
		c.mu.Unlock()
		if err != nil {
			c.t.Fatalf("waiting for %s: socket closed: %v", what, err)
		}
		select {
		case <-ch:
		case <-deadline.C:
			c.t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func ofType(typ string) func(map[string]any) bool {
	return func(f map[string]any) bool { return f["type"] == typ }
}

func withContent(typ, content string) func(map[string]any) bool {
	return func(f map[string]any) bool { return f["type"] == typ && f["content"] == content }
}

// count returns how many frames match pred so far.
func (c *wsClient) count(pred func(map[string]any) bool) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, f := range c.frames {
		if f != nil && pred(f) {
			n++
		}
	}
	return n
}

func (c *wsClient) rawFrames() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.raws...)
}

// waitClosed waits for the socket to end and returns the read error.
func (c *wsClient) waitClosed() error {
	c.t.Helper()
	select {
	case <-c.done:
	case <-time.After(waitFor):
		c.t.Fatal("socket still open")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.readErr
}

func jsonBody(v any) string {
	var b bytes.Buffer
	_ = json.NewEncoder(&b).Encode(v)
	return b.String()
}
