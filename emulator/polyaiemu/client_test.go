package polyaiemu

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// A minimal Messaging API client for the tests, written here from the
// protocol on purpose: the emulator must not be checked with the
// production connector.

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

// post sends a REST POST and decodes the JSON answer.
func post(t *testing.T, u string, header http.Header, body string) (int, map[string]any, http.Header) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = header
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("%s: body %q is not a JSON object: %v", u, raw, err)
	}
	return resp.StatusCode, out, resp.Header
}

// token gets an access token over REST.
func token(t *testing.T, s *Server) string {
	t.Helper()
	status, body, _ := post(t, s.URL()+AccessTokenPath, http.Header{"X-Token": {s.ConnectorToken()},
		"X-Host": {s.Host()}, "Content-Type": {"application/json"}}, "{}")
	if status != 200 {
		t.Fatalf("access token: %d %v", status, body)
	}
	return body["access_token"].(string)
}

// newSession gets a token and creates a session over REST.
func newSession(t *testing.T, s *Server, body string) (sid, tok string) {
	t.Helper()
	tok = token(t, s)
	status, out, _ := post(t, s.URL()+SessionsPath, http.Header{"Authorization": {"Bearer " + tok},
		"Content-Type": {"application/json"}}, body)
	if status != 200 {
		t.Fatalf("create session: %d %v", status, out)
	}
	return out["session_id"].(string), tok
}

// wireEvent is one server event; a batch's events are in Batch.
type wireEvent struct {
	ID       string
	Sequence *int64
	Type     string
	Payload  map[string]any
	Metadata map[string]any
	Keys     map[string]json.RawMessage // every top-level key, raw
	Batch    []wireEvent
}

func (e wireEvent) seq() int64 {
	if e.Sequence == nil {
		return 0
	}
	return *e.Sequence
}

func (e wireEvent) custom(key string) any {
	c, _ := e.Metadata["custom"].(map[string]any)
	return c[key]
}

func parseEvent(raw []byte) (wireEvent, error) {
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(raw, &keys); err != nil {
		return wireEvent{}, err
	}
	e := wireEvent{Keys: keys}
	_ = json.Unmarshal(keys["id"], &e.ID)
	_ = json.Unmarshal(keys["sequence"], &e.Sequence)
	_ = json.Unmarshal(keys["type"], &e.Type)
	_ = json.Unmarshal(keys["metadata"], &e.Metadata)
	p := keys["payload"]
	if p == nil { // the oneof shape of batch events
		p = keys[strings.ToLower(strings.TrimPrefix(e.Type, "EVENT_TYPE_"))]
	}
	_ = json.Unmarshal(p, &e.Payload)
	if e.Type == TypeEventBatch {
		var b struct {
			Events []json.RawMessage `json:"events"`
		}
		_ = json.Unmarshal(keys["payload"], &b)
		for _, r := range b.Events {
			inner, err := parseEvent(r)
			if err != nil {
				return wireEvent{}, err
			}
			e.Batch = append(e.Batch, inner)
		}
	}
	return e, nil
}

type wsClient struct {
	t  *testing.T
	ws *websocket.Conn

	mu      sync.Mutex
	events  []wireEvent // frames in arrival order
	bad     [][]byte    // frames that were not JSON
	changed chan struct{}
	done    chan struct{}
	readErr error
}

func socketURL(s *Server, sid, tok, cursor string) string {
	q := url.Values{}
	if sid != "" {
		q.Set("session_id", sid)
	}
	if tok != "" {
		q.Set("access_token", tok)
	}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	return s.SocketURL() + "?" + q.Encode()
}

func dial(t *testing.T, u string) (*wsClient, *http.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	ws, resp, err := websocket.Dial(ctx, u, nil)
	if err != nil {
		return nil, resp, err
	}
	ws.SetReadLimit(8 << 20)
	c := &wsClient{t: t, ws: ws, changed: make(chan struct{}), done: make(chan struct{})}
	go c.read()
	t.Cleanup(func() {
		_ = ws.CloseNow()
		<-c.done
	})
	return c, resp, nil
}

func mustDial(t *testing.T, s *Server, sid, tok, cursor string) *wsClient {
	t.Helper()
	c, resp, err := dial(t, socketURL(s, sid, tok, cursor))
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial: %v (status %d)", err, status)
	}
	return c
}

// refusal dials u, expects the upgrade refused with status and message.
func refusal(t *testing.T, u string, status int, message string) http.Header {
	t.Helper()
	_, resp, err := dial(t, u)
	if err == nil || resp == nil {
		t.Fatalf("upgrade %s: succeeded or no response (%v)", u, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var body map[string]any
	if resp.StatusCode != status || json.Unmarshal(raw, &body) != nil || body["message"] != message {
		t.Fatalf("refusal %d %s, want %d %q", resp.StatusCode, raw, status, message)
	}
	return resp.Header
}

func (c *wsClient) read() {
	defer close(c.done)
	for {
		_, data, err := c.ws.Read(context.Background())
		c.mu.Lock()
		if err != nil {
			c.readErr = err
		} else if e, perr := parseEvent(data); perr != nil {
			c.bad = append(c.bad, data)
		} else {
			c.events = append(c.events, e)
		}
		close(c.changed)
		c.changed = make(chan struct{})
		c.mu.Unlock()
		if err != nil {
			return
		}
	}
}

func (c *wsClient) send(v any) {
	c.t.Helper()
	data, ok := v.([]byte)
	if !ok {
		if str, isStr := v.(string); isStr {
			data = []byte(str)
		} else {
			data, _ = json.Marshal(v)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := c.ws.Write(ctx, websocket.MessageText, data); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// sendEvent sends a client event with an optional client_event_id.
func (c *wsClient) sendEvent(typ string, payload map[string]any, clientEventID string) {
	c.t.Helper()
	ev := map[string]any{"type": typ, "payload": payload}
	if clientEventID != "" {
		ev["metadata"] = map[string]any{"custom": map[string]any{"client_event_id": clientEventID}}
	}
	c.send(ev)
}

// flat returns the events received so far, batches flattened.
func (c *wsClient) flat() []wireEvent {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []wireEvent
	for _, e := range c.events {
		if e.Type == TypeEventBatch {
			out = append(out, e.Batch...)
			continue
		}
		out = append(out, e)
	}
	return out
}

// frames returns the frames received so far, batches as they came.
func (c *wsClient) frames() []wireEvent {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]wireEvent(nil), c.events...)
}

// waitN waits until the flattened stream holds n events matching
// match, and returns the stream.
func (c *wsClient) waitN(what string, n int, match func(wireEvent) bool) []wireEvent {
	c.t.Helper()
	timeout := time.After(waitFor)
	for {
		c.mu.Lock()
		ch, err := c.changed, c.readErr
		c.mu.Unlock()
		all := c.flat()
		got := 0
		for _, e := range all {
			if match(e) {
				got++
			}
		}
		if got >= n {
			return all
		}
		if err != nil {
			c.t.Fatalf("waiting for %s: socket closed: %v (have %s)", what, err, types(all))
		}
		select {
		case <-ch:
		case <-timeout:
			c.t.Fatalf("timed out waiting for %s (have %s)", what, types(all))
		}
	}
}

// waitType waits for the n-th event of type typ and returns it.
func (c *wsClient) waitType(typ string, n int) wireEvent {
	c.t.Helper()
	all := c.waitN(typ, n, func(e wireEvent) bool { return e.Type == typ })
	for _, e := range all {
		if e.Type == typ {
			if n--; n == 0 {
				return e
			}
		}
	}
	panic("unreachable")
}

// waitClosed waits for the read loop to end and returns its error.
func (c *wsClient) waitClosed() error {
	c.t.Helper()
	select {
	case <-c.done:
	case <-time.After(waitFor):
		c.t.Fatal("timed out waiting for the socket to close")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.readErr
}

func types(events []wireEvent) string {
	var b bytes.Buffer
	for i, e := range events {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%s#%d", strings.TrimPrefix(e.Type, "EVENT_TYPE_"), e.seq())
	}
	return b.String()
}

func ofType(typ string) func(wireEvent) bool {
	return func(e wireEvent) bool { return e.Type == typ }
}

// typesOf lists the types of events, without the EVENT_TYPE_ prefix.
func typesOf(events []wireEvent) []string {
	out := make([]string, 0, len(events))
	for _, e := range events {
		out = append(out, strings.TrimPrefix(e.Type, "EVENT_TYPE_"))
	}
	return out
}

// joined opens a socket on a new REST-made session and joins the agent,
// waiting for the greeting.
func joined(t *testing.T, s *Server, body string) (*wsClient, string, string) {
	t.Helper()
	sid, tok := newSession(t, s, body)
	c := mustDial(t, s, sid, tok, "")
	c.waitType(TypeSessionStart, 1)
	c.sendEvent(TypeRequestJoin, map[string]any{}, "join-1")
	c.waitN("greeting", 1, func(e wireEvent) bool {
		return e.Type == TypeAgentMessage || (e.Type == TypeAgentMessageChunk && e.Payload["is_complete"] == true)
	})
	return c, sid, tok
}
