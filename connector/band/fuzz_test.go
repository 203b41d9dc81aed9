package band

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"path"
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"

	"github.com/bridgeworks/bridge/connector"
)

const testAgentID = "6f0c1e7a-2b4d-4c8e-9a51-3d7e0b9f1a2c"

// sentRequest is what a command turned into on the wire.
type sentRequest struct {
	method, escapedPath, rawQuery string
	body                          []byte
}

// recorder is an http.RoundTripper that answers every call 200 with an
// empty data object and keeps the last request: commands are checked
// without a network.
type recorder struct {
	mu   sync.Mutex
	last *sentRequest
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil {
		body, _ = io.ReadAll(req.Body)
		_ = req.Body.Close()
	}
	r.mu.Lock()
	r.last = &sentRequest{method: req.Method, escapedPath: req.URL.EscapedPath(), rawQuery: req.URL.RawQuery, body: body}
	r.mu.Unlock()
	return &http.Response{
		StatusCode: http.StatusOK, Header: http.Header{"Content-Type": {"application/json"}},
		Body: io.NopCloser(strings.NewReader(`{"data":{}}`)), Request: req,
	}, nil
}

func (r *recorder) take() *sentRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.last
	r.last = nil
	return s
}

func newRecordedConnector(t testing.TB) (*Connector, *recorder) {
	t.Helper()
	rec := &recorder{}
	c, err := New(ConfigFor("http://band.test", testAgentID, "fuzz-key"),
		connector.Deps{Log: zerolog.Nop(), HTTPClient: &http.Client{Transport: rec}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return c, rec
}

// checkExecute runs one command and checks the contract of Execute for
// arbitrary input: no panic; an error is a *connector.RequestError (the
// transport never fails here); a success made exactly one call whose path
// stays under /api/v1/agent/ with no dot segments a server could resolve
// into another endpoint, and whose body, if any, is a JSON object.
func checkExecute(t *testing.T, c *Connector, rec *recorder, name, room string, args []byte) {
	t.Helper()
	_, err := c.Execute(context.Background(), connector.Command{ID: "id", Name: name, Room: room, Args: args})
	sent := rec.take()
	if err != nil {
		var re *connector.RequestError
		if !errors.As(err, &re) {
			t.Fatalf("Execute(%q, room %q, %q): error is %T, not a RequestError: %v", name, room, args, err, err)
		}
		if !connector.IsPermanent(err) {
			t.Fatalf("bad input is not permanent: %v", err)
		}
		if sent != nil {
			t.Fatalf("Execute(%q) failed with %v but still called %s %s", name, err, sent.method, sent.escapedPath)
		}
		return
	}
	if sent == nil {
		t.Fatalf("Execute(%q, room %q, %q) succeeded without a call", name, room, args)
	}
	p := sent.escapedPath
	if !strings.HasPrefix(p, "/api/v1/agent/") {
		t.Fatalf("Execute(%q, room %q): path %q is outside /api/v1/agent/", name, room, p)
	}
	if path.Clean(p) != p {
		t.Fatalf("Execute(%q, room %q, %q): path %q has dot or empty segments (cleans to %q)", name, room, args, p, path.Clean(p))
	}
	if len(sent.body) > 0 {
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(sent.body, &obj); err != nil {
			t.Fatalf("Execute(%q): body %q is not a JSON object: %v", name, sent.body, err)
		}
	}
}

// FuzzExecute feeds arbitrary command names, rooms and arguments through
// (*Connector).Execute against a recording transport. Seeds:
// testdata/fuzz/FuzzExecute and one valid call per command.
func FuzzExecute(f *testing.F) {
	valid := map[string]string{
		"send_message":            `{"content":"hi @Dana","mentions":[{"id":"u1"},{"handle":"dana"}]}`,
		"post_event":              `{"content":"thinking","message_type":"thought","metadata":{"k":1}}`,
		"mark_processing":         `{"message_id":"m1"}`,
		"mark_processed":          `{"message_id":"m1"}`,
		"mark_failed":             `{"message_id":"m1","error":"model timeout"}`,
		"create_chat":             `{"title":"t","task_id":"x"}`,
		"update_chat":             `{"title":"t"}`,
		"add_participant":         `{"participant_id":"p1","role":"member"}`,
		"remove_participant":      `{"participant_id":"p1"}`,
		"set_activity":            `{"working":true}`,
		"add_contact":             `{"handle":"a/b","message":"hi"}`,
		"remove_contact":          `{"contact_id":"c1"}`,
		"respond_contact_request": `{"action":"approve","request_id":"r1"}`,
		"peers":                   `{"page":1,"page_size":"10","not_in_chat":"r1"}`,
		"list_messages":           `{"status":"pending","limit":5}`,
		"context":                 `{"cursor":"abc"}`,
	}
	for _, name := range Commands() {
		args := valid[name]
		if args == "" {
			args = "{}"
		}
		f.Add(name, "6f1d-room", []byte(args))
	}
	f.Add("send_message", "", []byte(`{"content":"x","mentions":[{"id":"u"}]}`))
	f.Add("send_message", "r", []byte(`{"content":7}`))
	f.Add("mark_failed", "r", []byte(`{"message_id":"..","error":"x"}`))
	f.Add("get_chat", "..", []byte(`{}`))
	f.Add("list_messages", "a/b?c#d", []byte(`{"page":{"x":1}}`))
	f.Add("nope", "r", []byte(`null`))
	c, rec := newRecordedConnector(f)
	f.Fuzz(func(t *testing.T, name, room string, args []byte) {
		checkExecute(t, c, rec, name, room, args)
	})
}
