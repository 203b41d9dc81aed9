package bandemu

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// A minimal Phoenix v2 client and REST helpers for the tests. Written
// here, from the protocol, on purpose: the emulator must not be checked
// with the production client.

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

type frame struct {
	JoinRef *string
	Ref     *string
	Topic   string
	Event   string
	Payload map[string]any
	Raw     string
}

func (f frame) str(p *string) string {
	if p == nil {
		return "<null>"
	}
	return *p
}

type phxClient struct {
	t  *testing.T
	ws *websocket.Conn

	mu      sync.Mutex
	frames  []frame
	changed chan struct{}
	done    chan struct{}
	readErr error
	ref     int
}

func socketURL(s *Server, q url.Values) string {
	return s.SocketURL() + "?" + q.Encode()
}

func agentQuery(s *Server) url.Values {
	return url.Values{"vsn": {"2.0.0"}, "api_key": {s.APIKey()}, "agent_id": {s.AgentID()}}
}

// dial connects; on an HTTP refusal it returns the response.
func dial(t *testing.T, rawURL string, header http.Header) (*phxClient, *http.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	ws, resp, err := websocket.Dial(ctx, rawURL, &websocket.DialOptions{HTTPHeader: header})
	if err != nil {
		return nil, resp, err
	}
	c := &phxClient{t: t, ws: ws, changed: make(chan struct{}), done: make(chan struct{})}
	ws.SetReadLimit(1 << 20)
	go c.readLoop()
	t.Cleanup(func() {
		_ = ws.CloseNow()
		<-c.done
	})
	return c, resp, nil
}

func mustDial(t *testing.T, s *Server) *phxClient {
	t.Helper()
	c, _, err := dial(t, socketURL(s, agentQuery(s)), nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *phxClient) readLoop() {
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
		f := frame{Raw: string(data)}
		var parts []json.RawMessage
		if json.Unmarshal(data, &parts) == nil && len(parts) == 5 {
			_ = json.Unmarshal(parts[0], &f.JoinRef)
			_ = json.Unmarshal(parts[1], &f.Ref)
			_ = json.Unmarshal(parts[2], &f.Topic)
			_ = json.Unmarshal(parts[3], &f.Event)
			_ = json.Unmarshal(parts[4], &f.Payload)
		}
		c.frames = append(c.frames, f)
		close(c.changed)
		c.changed = make(chan struct{})
		c.mu.Unlock()
	}
}

func (c *phxClient) nextRef() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ref++
	return strconv.Itoa(c.ref)
}

func (c *phxClient) sendRaw(data string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := c.ws.Write(ctx, websocket.MessageText, []byte(data)); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

func (c *phxClient) send(joinRef, ref any, topic, event string) {
	c.t.Helper()
	b, _ := json.Marshal([]any{joinRef, ref, topic, event, map[string]any{}})
	c.sendRaw(string(b))
}

// waitFrame returns the first frame received so far or later that
// matches pred.
func (c *phxClient) waitFrame(what string, pred func(frame) bool) frame {
	c.t.Helper()
	deadline := time.NewTimer(waitFor)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		for _, f := range c.frames {
			if pred(f) {
				c.mu.Unlock()
				return f
			}
		}
		changed, err := c.changed, c.readErr
		c.mu.Unlock()
		if err != nil {
			c.t.Fatalf("socket closed (%v) while waiting for %s", err, what)
		}
		select {
		case <-changed:
		case <-deadline.C:
			c.t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func (c *phxClient) has(pred func(frame) bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, f := range c.frames {
		if pred(f) {
			return true
		}
	}
	return false
}

// reply waits for the phx_reply carrying ref.
func (c *phxClient) reply(ref string) frame {
	c.t.Helper()
	return c.waitFrame("reply "+ref, func(f frame) bool {
		return f.Event == "phx_reply" && f.Ref != nil && *f.Ref == ref
	})
}

// join sends phx_join with join_ref = ref (as phoenix.js does) and
// returns the ref and the reply.
func (c *phxClient) join(topic string) (string, frame) {
	c.t.Helper()
	ref := c.nextRef()
	c.send(ref, ref, topic, "phx_join")
	return ref, c.reply(ref)
}

func (c *phxClient) mustJoin(topic string) string {
	c.t.Helper()
	ref, r := c.join(topic)
	if status(r) != "ok" {
		c.t.Fatalf("join %s: %s", topic, r.Raw)
	}
	return ref
}

func status(f frame) string {
	s, _ := f.Payload["status"].(string)
	return s
}

func (c *phxClient) push(topic, event string) frame {
	c.t.Helper()
	return c.waitFrame(event+" on "+topic, func(f frame) bool { return f.Topic == topic && f.Event == event })
}

// waitClosed waits for the socket to close and returns the close error.
func (c *phxClient) waitClosed() error {
	c.t.Helper()
	select {
	case <-c.done:
	case <-time.After(waitFor):
		c.t.Fatal("socket did not close")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.readErr
}

// rest is one REST call; body is JSON-encoded unless nil.
type restResult struct {
	Status int
	Header http.Header
	Body   map[string]any
	Raw    string
}

func (r restResult) data() map[string]any {
	d, _ := r.Body["data"].(map[string]any)
	return d
}

func (r restResult) list() []any {
	d, _ := r.Body["data"].([]any)
	return d
}

func (r restResult) meta() map[string]any {
	d, _ := r.Body["metadata"].(map[string]any)
	return d
}

func (r restResult) errCode() string {
	e, _ := r.Body["error"].(map[string]any)
	code, _ := e["code"].(string)
	return code
}

func apiWithKey(t *testing.T, s *Server, key, method, path string, body any) restResult {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, s.URL()+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("X-API-Key", key)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	res := restResult{Status: resp.StatusCode, Header: resp.Header, Raw: string(raw)}
	if len(raw) > 0 && strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(raw, &res.Body); err != nil {
			t.Fatalf("%s %s: bad JSON %q", method, path, raw)
		}
	}
	return res
}

func api(t *testing.T, s *Server, method, path string, body any) restResult {
	t.Helper()
	return apiWithKey(t, s, s.APIKey(), method, path, body)
}

func expectStatus(t *testing.T, r restResult, want int) {
	t.Helper()
	if r.Status != want {
		t.Fatalf("status %d, want %d: %s", r.Status, want, r.Raw)
	}
}

// expectError checks Band's error body and, for 422, its details.
func expectError(t *testing.T, r restResult, status int, code string) {
	t.Helper()
	expectStatus(t, r, status)
	e, _ := r.Body["error"].(map[string]any)
	if e == nil || e["code"] != code || e["message"] == "" || e["request_id"] == "" {
		t.Fatalf("error body %s, want code %q", r.Raw, code)
	}
	if _, ok := e["details"].(map[string]any); status == http.StatusUnprocessableEntity && !ok {
		t.Fatalf("422 without details: %s", r.Raw)
	}
}
