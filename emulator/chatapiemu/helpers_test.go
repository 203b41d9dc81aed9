package chatapiemu

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Plain net/http helpers and a small SSE reader, written here from the
// protocol: the emulator must not be checked with a production client.

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
		time.Sleep(2 * time.Millisecond)
	}
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body %q: %v", r.body, err)
	}
	return m
}

// detail returns the FastAPI detail of an error body as a string (the
// first item's msg for a 422 list).
func (r response) detail(t *testing.T) string {
	t.Helper()
	switch d := r.json(t)["detail"].(type) {
	case string:
		return d
	case []any:
		if len(d) > 0 {
			return d[0].(map[string]any)["msg"].(string)
		}
	}
	t.Fatalf("no detail in %s", r.body)
	return ""
}

func newRequest(t *testing.T, ctx context.Context, s *Server, method, path, key string, body any) *http.Request {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.BaseURL()+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	req.Header.Set("Content-Type", "application/json")
	return req
}

// do sends one request (body: nil, a raw string, or a value to encode).
func do(t *testing.T, s *Server, method, path, key string, body any) response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	resp, err := http.DefaultClient.Do(newRequest(t, ctx, s, method, path, key, body))
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read: %v", method, path, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// sse reads a text/event-stream response one data line at a time.
type sse struct {
	resp   *http.Response
	br     *bufio.Reader
	cancel context.CancelFunc
}

// openStream POSTs to an agent's /chat/stream and checks for 200.
func openStream(t *testing.T, s *Server, agentID, key, message string) *sse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	resp, err := http.DefaultClient.Do(newRequest(t, ctx, s, "POST", "/agents/"+agentID+"/chat/stream", key,
		map[string]any{"message": message}))
	if err != nil {
		cancel()
		t.Fatalf("stream: %v", err)
	}
	st := &sse{resp: resp, br: bufio.NewReader(resp.Body), cancel: cancel}
	t.Cleanup(st.close)
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("stream: status %d: %s", resp.StatusCode, b)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("stream content type %q", ct)
	}
	return st
}

func (s *sse) close() {
	s.cancel()
	_ = s.resp.Body.Close()
}

// next returns the payload of the next "data: " line.
func (s *sse) next() (string, error) {
	for {
		line, err := s.br.ReadString('\n')
		if err != nil {
			if errors.Is(err, io.EOF) && line == "" {
				return "", io.EOF
			}
			return "", err
		}
		line = strings.TrimRight(line, "\r\n")
		if data, ok := strings.CutPrefix(line, "data: "); ok {
			return data, nil
		}
		if line != "" {
			return "", errors.New("unexpected SSE line: " + line)
		}
	}
}

// streamChunk is one decoded data object.
type streamChunk struct {
	Type    string         `json:"type"`
	Content string         `json:"content"`
	Tool    string         `json:"tool"`
	Args    map[string]any `json:"args"`
}

// nextChunk returns the next chunk; done is true on the [DONE] sentinel.
func (s *sse) nextChunk(t *testing.T) (c streamChunk, done bool, err error) {
	t.Helper()
	data, err := s.next()
	if err != nil {
		return c, false, err
	}
	if data == "[DONE]" {
		return c, true, nil
	}
	if err := json.Unmarshal([]byte(data), &c); err != nil {
		t.Fatalf("chunk %q: %v", data, err)
	}
	return c, false, nil
}

// readAll reads chunks up to [DONE] (sawDone) or a read error.
func (s *sse) readAll(t *testing.T) (chunks []streamChunk, sawDone bool, err error) {
	t.Helper()
	for {
		c, done, err := s.nextChunk(t)
		if err != nil || done {
			return chunks, done, err
		}
		chunks = append(chunks, c)
	}
}

// textOf joins the text chunks and counts them.
func textOf(chunks []streamChunk, textType string) (string, int) {
	var b strings.Builder
	n := 0
	for _, c := range chunks {
		if c.Type == textType {
			b.WriteString(c.Content)
			n++
		}
	}
	return b.String(), n
}
