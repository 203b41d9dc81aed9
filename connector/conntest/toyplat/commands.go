package toyplat

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/bridgeworks/bridge/connector"
)

// Progress stages of the platform, by processing state.
var stages = map[connector.ProcessingState]string{
	connector.Processing: "seen",
	connector.Processed:  "done",
	connector.Failed:     "dropped",
}

// call is the REST call a command becomes.
type call struct {
	method, path string
	body         any
}

var commands = map[string]func(room string, args json.RawMessage) (call, error){
	"post":     buildPost,
	"progress": buildProgress,
	"conversations": func(string, json.RawMessage) (call, error) {
		return call{http.MethodGet, "/v1/conversations", nil}, nil
	},
}

// Commands lists the commands the connector executes.
func Commands() []string {
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Execute runs one command as one REST call.
func (c *Connector) Execute(ctx context.Context, cmd connector.Command) (connector.Response, error) {
	build, ok := commands[cmd.Name]
	if !ok {
		return connector.Response{}, connector.BadRequest("command", "unknown command %q for toy (known: %s)", cmd.Name, strings.Join(Commands(), ", "))
	}
	args := cmd.Args
	if len(args) == 0 || string(args) == "null" {
		args = json.RawMessage(`{}`)
	}
	cl, err := build(cmd.Room, args)
	if err != nil {
		return connector.Response{}, err
	}
	var rd io.Reader
	if cl.body != nil {
		b, err := json.Marshal(cl.body)
		if err != nil {
			return connector.Response{}, fmt.Errorf("toy: encode %s: %w", cmd.Name, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, cl.method, c.base+cl.path, rd)
	if err != nil {
		return connector.Response{}, fmt.Errorf("toy: %s: %w", cmd.Name, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if cl.method == http.MethodPost && cmd.ID != "" {
		req.Header.Set("Idempotency-Key", cmd.ID)
	}
	resp, err := c.rest.Do(req)
	if err != nil {
		return connector.Response{}, fmt.Errorf("toy: %s %s: %w", cl.method, cl.path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return connector.Response{Status: resp.StatusCode}, fmt.Errorf("toy: %s: %w", cmd.Name, platformError(resp))
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return connector.Response{Status: resp.StatusCode}, fmt.Errorf("toy: %s: read answer: %w", cmd.Name, err)
	}
	out := connector.Response{Status: resp.StatusCode}
	if len(bytes.TrimSpace(data)) > 0 {
		out.Data = data
	}
	if cmd.Name == "post" {
		var p struct {
			ID string `json:"id"`
		}
		if json.Unmarshal(data, &p) == nil {
			out.Ref = p.ID
		}
	}
	return out, nil
}

// decode parses args strictly; the error names the field.
func decode(args json.RawMessage, v any) error {
	d := json.NewDecoder(bytes.NewReader(args))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return connector.BadRequest("args", "%v", err)
	}
	return nil
}

func buildPost(room string, args json.RawMessage) (call, error) {
	if room == "" {
		return call{}, connector.BadRequest("room", "post needs a room (the conversation id)")
	}
	var a struct {
		Text      *string `json:"text"`
		InReplyTo string  `json:"in_reply_to"`
	}
	if err := decode(args, &a); err != nil {
		return call{}, err
	}
	if a.Text == nil || strings.TrimSpace(*a.Text) == "" {
		return call{}, connector.BadRequest("text", "is required and must not be blank")
	}
	body := map[string]string{"text": *a.Text}
	if a.InReplyTo != "" {
		body["in_reply_to"] = a.InReplyTo
	}
	return call{http.MethodPost, "/v1/conversations/" + url.PathEscape(room) + "/posts", body}, nil
}

func buildProgress(_ string, args json.RawMessage) (call, error) {
	var a struct {
		Post  string `json:"post"`
		Stage string `json:"stage"`
		Note  string `json:"note"`
	}
	if err := decode(args, &a); err != nil {
		return call{}, err
	}
	if a.Post == "" || a.Post == "." || a.Post == ".." {
		return call{}, connector.BadRequest("post", "is required (a post id)")
	}
	switch a.Stage {
	case "seen", "done", "dropped":
	default:
		return call{}, connector.BadRequest("stage", "%q is not seen, done or dropped", a.Stage)
	}
	return call{http.MethodPut, "/v1/posts/" + url.PathEscape(a.Post) + "/progress", map[string]string{"stage": a.Stage, "note": a.Note}}, nil
}

// ProcessingRef returns the post id of a "post" event.
func (c *Connector) ProcessingRef(event string, data json.RawMessage) (string, bool) {
	if event != "post" {
		return "", false
	}
	var p struct {
		ID string `json:"id"`
	}
	if json.Unmarshal(data, &p) != nil || p.ID == "" {
		return "", false
	}
	return p.ID, true
}

// ProcessingCommand is the "progress" command recording state for post id.
func (c *Connector) ProcessingCommand(state connector.ProcessingState, room, id, reason string) connector.Command {
	args, _ := json.Marshal(map[string]string{"post": id, "stage": stages[state], "note": reason}) // strings: cannot fail
	return connector.Command{Name: "progress", Room: room, Args: args}
}
