package agentconnect

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/bridgeworks/bridge/connector"
)

// maxContent bounds a message's content: the server closes a socket on a
// frame over 1 MiB.
const maxContent = 512 << 10

// endGrace is how long an ended session's socket stays open for the
// platform's closing notice.
const endGrace = 5 * time.Second

type command struct {
	room bool // needs a room (a session id)
	run  func(c *Connector, ctx context.Context, room string, args json.RawMessage) (connector.Response, error)
}

var commands = map[string]command{
	"create_session": {run: (*Connector).createSession},
	"send_message":   {room: true, run: (*Connector).sendMessage},
	"end_session":    {room: true, run: (*Connector).endSession},
	"agent_message":  {run: (*Connector).agentMessage},
	// Reads (rpc).
	"providers":    {run: get("/api/chat/providers", "GET /api/chat/providers")},
	"agents":       {run: get("/api/agents/list", "GET /api/agents/list")},
	"agent_status": {run: (*Connector).agentStatus},
	"sessions":     {run: (*Connector).openSessions},
	// Processing state: the platform keeps none; answered by the bridge.
	"mark_processing": {run: recorded},
	"mark_processed":  {run: recorded},
	"mark_failed":     {run: recorded},
}

// Commands lists the commands and reads the connector executes.
func Commands() []string {
	out := make([]string, 0, len(commands))
	for n := range commands {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// Execute runs one command: a REST call, or a message on the session's
// socket (send_message).
func (c *Connector) Execute(ctx context.Context, cmd connector.Command) (connector.Response, error) {
	spec, ok := commands[cmd.Name]
	if !ok {
		return connector.Response{}, connector.BadRequest("command", "unknown command %q for agentconnect (known: %s)", cmd.Name, strings.Join(Commands(), ", "))
	}
	if spec.room && cmd.Room == "" {
		return connector.Response{}, connector.BadRequest("room", "%s needs a room (the session id)", cmd.Name)
	}
	if cmd.Room != "" && spec.room && !sessionID.MatchString(cmd.Room) {
		return connector.Response{}, connector.BadRequest("room", "%q is not a session id", cmd.Room)
	}
	args := cmd.Args
	if len(bytes.TrimSpace(args)) == 0 || string(bytes.TrimSpace(args)) == "null" {
		args = json.RawMessage("{}")
	}
	if cmd.Name == "create_session" {
		return c.createSessionOnce(ctx, cmd, args)
	}
	return spec.run(c, ctx, cmd.Room, args)
}

// decode parses args strictly into v; errors name the field.
func decode(args json.RawMessage, v any) error {
	d := json.NewDecoder(bytes.NewReader(args))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			field := te.Field
			if field == "" {
				field = "args"
			}
			return connector.BadRequest(field, "has the wrong type (%s)", te.Value)
		}
		if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			return connector.BadRequest(strings.Trim(f, `"`), "is not an argument of this command")
		}
		return connector.BadRequest("args", "not a JSON object: %v", err)
	}
	return nil
}

func blank(s string) bool { return strings.TrimFunc(s, unicode.IsSpace) == "" }

var providers = []string{"openai", "anthropic", "groq", "google"}

// createSession posts a CreateSessionRequest (passed through as the
// worker wrote it, after the checks the platform would answer with a
// bare 422), keeps the new session and opens its socket.
func (c *Connector) createSession(ctx context.Context, _ string, args json.RawMessage) (connector.Response, error) {
	return c.createSessionAs(ctx, args, "")
}

// createSessionAs is createSession, the session's record naming the state
// key of the command that created it (createdBy, "" for none).
func (c *Connector) createSessionAs(ctx context.Context, args json.RawMessage, createdBy string) (connector.Response, error) {
	var a struct {
		SessionType string                     `json:"session_type"`
		Agents      map[string]json.RawMessage `json:"agents"`
	}
	if err := json.Unmarshal(args, &a); err != nil {
		return connector.Response{}, connector.BadRequest("args", "not a session request: %v", err)
	}
	want := map[string]int{"human_agent": 1, "agent_agent": 2}[a.SessionType]
	switch {
	case want == 0:
		return connector.Response{}, connector.BadRequest("session_type", "%q is not human_agent or agent_agent", a.SessionType)
	case len(a.Agents) != want:
		return connector.Response{}, connector.BadRequest("agents", "a %s session takes exactly %d agent(s), not %d", a.SessionType, want, len(a.Agents))
	}
	for k, raw := range a.Agents {
		var ag struct {
			Provider string `json:"provider"`
		}
		if err := json.Unmarshal(raw, &ag); err != nil {
			return connector.Response{}, connector.BadRequest("agents."+k, "not an agent object")
		}
		if !slices.Contains(providers, ag.Provider) {
			return connector.Response{}, connector.BadRequest("agents."+k+".provider", "%q is not one of %s", ag.Provider, strings.Join(providers, ", "))
		}
	}
	status, data, err := c.call(ctx, http.MethodPost, "/api/chat/sessions/create", args, "POST /api/chat/sessions/create")
	if err != nil {
		return connector.Response{Status: status}, err
	}
	var out struct {
		SessionID   string `json:"session_id"`
		SessionType string `json:"session_type"`
		Agents      map[string]struct {
			AgentID string `json:"agent_id"`
		} `json:"agents"`
	}
	if err := json.Unmarshal(data, &out); err != nil || !sessionID.MatchString(out.SessionID) {
		return connector.Response{Status: status, Data: data}, connector.Sent(fmt.Errorf("agentconnect: create_session: the answer carries no session id"))
	}
	r := sessionRec{ID: out.SessionID, Type: out.SessionType, HumanID: "human_" + out.SessionID, Created: time.Now().UTC(), CreatedBy: createdBy}
	if r.Type == "" {
		r.Type = a.SessionType
	}
	for _, ag := range out.Agents {
		r.AgentIDs = append(r.AgentIDs, ag.AgentID)
	}
	slices.Sort(r.AgentIDs)
	if err := c.remember(ctx, r, true); err != nil {
		return connector.Response{Status: status, Data: data, Ref: r.ID}, connector.Sent(err)
	}
	return connector.Response{Status: status, Data: data, Ref: r.ID}, nil
}

// sendMessage writes a text frame on the session's socket.
func (c *Connector) sendMessage(ctx context.Context, room string, args json.RawMessage) (connector.Response, error) {
	var a struct {
		Content  *string         `json:"content"`
		Sender   string          `json:"sender"`
		Receiver string          `json:"receiver"`
		Metadata json.RawMessage `json:"metadata"`
	}
	if err := decode(args, &a); err != nil {
		return connector.Response{}, err
	}
	switch {
	case a.Content == nil:
		return connector.Response{}, connector.BadRequest("content", "is required")
	case blank(*a.Content):
		return connector.Response{}, connector.BadRequest("content", "is blank")
	case len(*a.Content) > maxContent:
		return connector.Response{}, connector.BadRequest("content", "is %d bytes, more than %d", len(*a.Content), maxContent)
	case len(a.Metadata) > 0 && string(a.Metadata) != "null" && bytes.TrimSpace(a.Metadata)[0] != '{':
		return connector.Response{}, connector.BadRequest("metadata", "must be an object")
	case (a.Sender == "") != (a.Receiver == ""):
		return connector.Response{}, connector.BadRequest("sender", "sender and receiver go together (agent ids of an agent_agent session)")
	}
	s, err := c.session(room)
	if err != nil {
		return connector.Response{}, err
	}
	if a.Sender != "" && s.rec.Type != "agent_agent" {
		return connector.Response{}, connector.BadRequest("sender", "only an agent_agent session takes sender and receiver")
	}
	return s.send(ctx, outFrame{Type: "text", Content: *a.Content, Sender: a.Sender, Receiver: a.Receiver,
		Timestamp: time.Now().UTC().Format("2006-01-02T15:04:05.000000+00:00"), Metadata: a.Metadata})
}

// endSession deletes the session on the platform and forgets it; its
// socket stays a moment for the platform's closing notice. A session the
// platform no longer knows (404) is forgotten too.
func (c *Connector) endSession(ctx context.Context, room string, args json.RawMessage) (connector.Response, error) {
	if err := decode(args, &struct{}{}); err != nil {
		return connector.Response{}, err
	}
	status, data, err := c.call(ctx, http.MethodDelete, "/api/chat/sessions/"+url.PathEscape(room), nil, "DELETE /api/chat/sessions/{id}")
	var pe *connector.PlatformError
	if err == nil || (errors.As(err, &pe) && pe.Status == http.StatusNotFound) {
		c.forget(ctx, room, endGrace)
	}
	return connector.Response{Status: status, Data: data}, err
}

// agentMessage posts to /api/agents/{agent_id}/message.
func (c *Connector) agentMessage(ctx context.Context, _ string, args json.RawMessage) (connector.Response, error) {
	var a struct {
		AgentID        string          `json:"agent_id"`
		ReceiverID     string          `json:"receiver_id"`
		Content        *string         `json:"content"`
		MessageType    string          `json:"message_type"`
		StructuredData json.RawMessage `json:"structured_data,omitempty"`
		Metadata       json.RawMessage `json:"metadata,omitempty"`
	}
	if err := decode(args, &a); err != nil {
		return connector.Response{}, err
	}
	switch {
	case a.AgentID == "" || a.AgentID == "." || a.AgentID == "..":
		return connector.Response{}, connector.BadRequest("agent_id", "is required (the sending agent's id)")
	case a.ReceiverID == "":
		return connector.Response{}, connector.BadRequest("receiver_id", "is required")
	case a.Content == nil || blank(*a.Content):
		return connector.Response{}, connector.BadRequest("content", "is required and must not be blank")
	}
	if a.MessageType == "" {
		a.MessageType = "text"
	}
	body := map[string]any{"receiver_id": a.ReceiverID, "content": *a.Content, "message_type": a.MessageType}
	if len(a.StructuredData) > 0 {
		body["structured_data"] = a.StructuredData
	}
	if len(a.Metadata) > 0 {
		body["metadata"] = a.Metadata
	}
	status, data, err := c.call(ctx, http.MethodPost, "/api/agents/"+url.PathEscape(a.AgentID)+"/message", body, "POST /api/agents/{agent_id}/message")
	return connector.Response{Status: status, Data: data}, err
}

// agentStatus reads one agent's status: agent_id, or the room's first AI
// agent (ai1_<session id>).
func (c *Connector) agentStatus(ctx context.Context, room string, args json.RawMessage) (connector.Response, error) {
	var a struct {
		AgentID string `json:"agent_id"`
	}
	if err := decode(args, &a); err != nil {
		return connector.Response{}, err
	}
	if a.AgentID == "" && room != "" {
		a.AgentID = "ai1_" + room
	}
	if a.AgentID == "" || a.AgentID == "." || a.AgentID == ".." {
		return connector.Response{}, connector.BadRequest("agent_id", "is required (or give a room: its first AI agent is asked for)")
	}
	status, data, err := c.call(ctx, http.MethodGet, "/api/agents/status/"+url.PathEscape(a.AgentID), nil, "GET /api/agents/status/{agent_id}")
	return connector.Response{Status: status, Data: data}, err
}

func get(path, route string) func(*Connector, context.Context, string, json.RawMessage) (connector.Response, error) {
	return func(c *Connector, ctx context.Context, _ string, args json.RawMessage) (connector.Response, error) {
		if err := decode(args, &struct{}{}); err != nil {
			return connector.Response{}, err
		}
		status, data, err := c.call(ctx, http.MethodGet, path, nil, route)
		return connector.Response{Status: status, Data: data}, err
	}
}

// openSessions lists the sessions this connection keeps open, with
// whether each one's socket is up.
func (c *Connector) openSessions(_ context.Context, _ string, args json.RawMessage) (connector.Response, error) {
	if err := decode(args, &struct{}{}); err != nil {
		return connector.Response{}, err
	}
	type view struct {
		sessionRec
		Socket bool `json:"socket_open"`
	}
	c.mu.Lock()
	out := make([]view, 0, len(c.known))
	for id, r := range c.known {
		v := view{sessionRec: r}
		if c.hub != nil {
			if s := c.hub.socks[id]; s != nil {
				s.mu.Lock()
				v.Socket = s.ws != nil
				s.mu.Unlock()
			}
		}
		out = append(out, v)
	}
	c.mu.Unlock()
	slices.SortFunc(out, func(a, b view) int { return strings.Compare(a.ID, b.ID) })
	b, _ := json.Marshal(map[string]any{"sessions": out})
	return connector.Response{Status: http.StatusOK, Data: b}, nil
}

// recorded answers a processing-state command: AgentConnect keeps no
// such state, the result records it.
func recorded(*Connector, context.Context, string, json.RawMessage) (connector.Response, error) {
	return connector.Response{Status: http.StatusOK, Data: json.RawMessage(`{"recorded":true}`)}, nil
}
