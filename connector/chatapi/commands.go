package chatapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/bridgeworks/bridge/connector"
)

// room says what a command's room is.
type room int

const (
	noRoom    room = iota
	agentRoom      // the agent id
	teamRoom       // the team id
)

type command struct {
	room room
	run  func(c *Connector, ctx context.Context, cmd connector.Command, emit func(connector.Event) error) (connector.Response, error)
}

var commandTable = map[string]command{
	// Chats: POSTs that cost the user credits, never sent twice.
	"chat":      {agentRoom, (*Connector).chat},
	"team_chat": {teamRoom, (*Connector).teamChat},
	// Inbox and processing state.
	"mark_read":       {agentRoom, (*Connector).markReadCmd},
	"mark_processed":  {agentRoom, (*Connector).markReadCmd},
	"mark_processing": {agentRoom, recordOnly},
	"mark_failed":     {agentRoom, recordOnly},
	// Reads (rpc).
	"history":       {agentRoom, (*Connector).history},
	"agents":        {noRoom, (*Connector).agents},
	"agent":         {agentRoom, get(agentPath, "")},
	"team":          {teamRoom, get(teamPath, "")},
	"conversations": {agentRoom, get(agentPath, "/conversations")},
	"inbox":         {agentRoom, get(agentPath, "/inbox")},
}

// Commands lists every command and read the connector executes.
func Commands() []string {
	names := make([]string, 0, len(commandTable))
	for n := range commandTable {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

var (
	_ connector.Executor       = (*Connector)(nil)
	_ connector.StreamExecutor = (*Connector)(nil)
	_ connector.StatsReporter  = (*Connector)(nil)
)

// Execute runs one command; a chat's events are not published (the
// bridge calls ExecuteStream).
func (c *Connector) Execute(ctx context.Context, cmd connector.Command) (connector.Response, error) {
	return c.ExecuteStream(ctx, cmd, func(connector.Event) error { return nil })
}

// ExecuteStream runs one command with one platform call (no retries: the
// bridge retries what was not sent); chats emit their events through emit.
func (c *Connector) ExecuteStream(ctx context.Context, cmd connector.Command, emit func(connector.Event) error) (connector.Response, error) {
	spec, ok := commandTable[cmd.Name]
	if !ok {
		return connector.Response{}, connector.BadRequest("command", "unknown command %q for chatapi (known: %s)", cmd.Name, strings.Join(Commands(), ", "))
	}
	switch {
	case spec.room == agentRoom && badID(cmd.Room):
		return connector.Response{}, connector.BadRequest("room", "%s needs a room: the agent id (%q is not one)", cmd.Name, cmd.Room)
	case spec.room == teamRoom && badID(cmd.Room):
		return connector.Response{}, connector.BadRequest("room", "%s needs a room: the team id (%q is not one)", cmd.Name, cmd.Room)
	}
	if len(bytes.TrimSpace(cmd.Args)) == 0 || string(cmd.Args) == "null" {
		cmd.Args = json.RawMessage("{}")
	}
	return spec.run(c, ctx, cmd, emit)
}

func badID(id string) bool { return id == "" || id == "." || id == ".." }

// decode parses args into v; a type error names the field.
func decode(args json.RawMessage, v any) error {
	if err := json.Unmarshal(args, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			field := te.Field
			if field == "" {
				field = "args"
			}
			return connector.BadRequest(field, "has the wrong type (%s)", te.Value)
		}
		return connector.BadRequest("args", "not a JSON object: %v", err)
	}
	return nil
}

func get(path func(id, suffix string) string, suffix string) func(*Connector, context.Context, connector.Command, func(connector.Event) error) (connector.Response, error) {
	return func(c *Connector, ctx context.Context, cmd connector.Command, _ func(connector.Event) error) (connector.Response, error) {
		return c.read(ctx, path(cmd.Room, suffix))
	}
}

func (c *Connector) read(ctx context.Context, path string) (connector.Response, error) {
	b, status, err := c.rest.getJSON(ctx, path)
	if err != nil {
		return connector.Response{Status: status}, err
	}
	return connector.Response{Status: status, Data: b}, nil
}

// history is GET /agents/:id/history?limit=&conversation_id=.
func (c *Connector) history(ctx context.Context, cmd connector.Command, _ func(connector.Event) error) (connector.Response, error) {
	var a struct {
		Limit          *int   `json:"limit"`
		ConversationID string `json:"conversation_id"`
	}
	if err := decode(cmd.Args, &a); err != nil {
		return connector.Response{}, err
	}
	q := url.Values{}
	if a.Limit != nil {
		if *a.Limit < 1 {
			return connector.Response{}, connector.BadRequest("limit", "must be at least 1")
		}
		q.Set("limit", strconv.Itoa(*a.Limit))
	}
	if a.ConversationID != "" {
		q.Set("conversation_id", a.ConversationID)
	}
	path := agentPath(cmd.Room, "/history")
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	return c.read(ctx, path)
}

// agents is GET /agents?page=&per_page=.
func (c *Connector) agents(ctx context.Context, cmd connector.Command, _ func(connector.Event) error) (connector.Response, error) {
	var a struct {
		Page    *int `json:"page"`
		PerPage *int `json:"per_page"`
	}
	if err := decode(cmd.Args, &a); err != nil {
		return connector.Response{}, err
	}
	q := url.Values{}
	for k, v := range map[string]*int{"page": a.Page, "per_page": a.PerPage} {
		if v != nil {
			if *v < 1 {
				return connector.Response{}, connector.BadRequest(k, "must be at least 1")
			}
			q.Set(k, strconv.Itoa(*v))
		}
	}
	path := "/agents"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	return c.read(ctx, path)
}

// markReadCmd marks inbox items read: {"message_id"} or {"message_ids"},
// in the configured body shape (mark_processed is the same with one id).
func (c *Connector) markReadCmd(ctx context.Context, cmd connector.Command, _ func(connector.Event) error) (connector.Response, error) {
	var a struct {
		MessageID  string   `json:"message_id"`
		MessageIDs []string `json:"message_ids"`
	}
	if err := decode(cmd.Args, &a); err != nil {
		return connector.Response{}, err
	}
	ids := a.MessageIDs
	if a.MessageID != "" {
		ids = append(ids, a.MessageID)
	}
	if len(ids) == 0 {
		return connector.Response{}, connector.BadRequest("message_id", "message_id or message_ids is required")
	}
	var body any = map[string][]string{"message_ids": ids}
	if c.st.MarkRead == MarkReadID {
		if len(ids) > 1 {
			return connector.Response{}, connector.BadRequest("message_ids", "settings.mark_read is \"id\": one message_id per command")
		}
		body = map[string]string{"message_id": ids[0]}
	}
	b, status, err := c.rest.readAll(ctx, call{method: http.MethodPost, path: agentPath(cmd.Room, "/mark-read"), body: body})
	if err != nil {
		return connector.Response{Status: status}, err
	}
	return connector.Response{Status: status, Data: b}, nil
}

// recordOnly answers a processing-state command the platform has no call
// for.
func recordOnly(*Connector, context.Context, connector.Command, func(connector.Event) error) (connector.Response, error) {
	return connector.Response{Status: http.StatusOK, Data: json.RawMessage(`{"recorded":true}`)}, nil
}
