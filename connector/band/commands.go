package band

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/bridgeworks/bridge/connector"
)

// Limits Band enforces, checked before calling it so a worker gets a clear
// bad_request instead of a bare 422.
const (
	maxEventContent  = 16384
	maxEventMetadata = 65536
	maxTitle         = 120
)

// request is one REST call a command turns into.
type request struct {
	method, path string
	body         any
}

// commandSpec describes one command: whether it needs a room and how its
// arguments become a REST call.
type commandSpec struct {
	room  bool
	build func(c *Connector, room string, args json.RawMessage) (request, error)
}

// Commands lists every command and read the Band connector executes.
func Commands() []string {
	names := make([]string, 0, len(commandTable))
	for n := range commandTable {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

var commandTable = map[string]commandSpec{
	// Writes (durable commands).
	"send_message":            {room: true, build: buildSendMessage},
	"post_event":              {room: true, build: buildPostEvent},
	"mark_processing":         {room: true, build: buildMark("processing")},
	"mark_processed":          {room: true, build: buildMark("processed")},
	"mark_failed":             {room: true, build: buildMark("failed")},
	"create_chat":             {build: buildCreateChat},
	"update_chat":             {room: true, build: buildUpdateChat},
	"add_participant":         {room: true, build: buildAddParticipant},
	"remove_participant":      {room: true, build: buildRemoveParticipant},
	"set_activity":            {room: true, build: buildSetActivity},
	"add_contact":             {build: buildContact("/api/v1/agent/contacts/add", "handle")},
	"remove_contact":          {build: buildContact("/api/v1/agent/contacts/remove", "")},
	"respond_contact_request": {build: buildRespondContact},
	// Reads (RPC).
	"me":                {build: get("/api/v1/agent/me")},
	"peers":             {build: getQuery("/api/v1/agent/peers", "page", "page_size", "not_in_chat")},
	"list_chats":        {build: getQuery("/api/v1/agent/chats", "page", "page_size")},
	"get_chat":          {room: true, build: getRoom("")},
	"list_messages":     {room: true, build: getRoom("/messages", "status", "cursor", "limit", "page", "page_size")},
	"next_message":      {room: true, build: getRoom("/messages/next")},
	"context":           {room: true, build: getRoom("/context", "cursor", "limit")},
	"list_participants": {room: true, build: getRoom("/participants")},
	"contacts":          {build: getQuery("/api/v1/agent/contacts", "page", "page_size")},
	"contact_requests":  {build: getQuery("/api/v1/agent/contacts/requests", "page", "page_size")},
}

// Execute runs one command as one REST call (no retries: the bridge's
// executor retries and keeps order).
func (c *Connector) Execute(ctx context.Context, cmd connector.Command) (connector.Response, error) {
	spec, ok := commandTable[cmd.Name]
	if !ok {
		return connector.Response{}, connector.BadRequest("command", "unknown command %q for band (known: %s)", cmd.Name, strings.Join(Commands(), ", "))
	}
	if spec.room && cmd.Room == "" {
		return connector.Response{}, connector.BadRequest("room", "%s needs a room (the chat id)", cmd.Name)
	}
	if spec.room && dotSegment(cmd.Room) {
		return connector.Response{}, connector.BadRequest("room", "%q is not a chat id", cmd.Room)
	}
	args := cmd.Args
	if len(args) == 0 {
		args = json.RawMessage("{}")
	}
	req, err := spec.build(c, cmd.Room, args)
	if err != nil {
		return connector.Response{}, err
	}
	status, data, err := c.rest.call(ctx, false, req.method, req.path, req.body)
	if err != nil {
		return connector.Response{Status: status}, err
	}
	resp := connector.Response{Status: status, Data: data}
	if cmd.Name == "send_message" || cmd.Name == "post_event" {
		// The message id, so that Reconcile's matches can be told apart.
		var d struct {
			ID string `json:"id"`
		}
		if json.Unmarshal(data, &d) == nil {
			resp.Ref = d.ID
		}
	}
	return resp, nil
}

// decode parses args into v; a type error names the field.
func decode(args json.RawMessage, v any) error {
	if err := json.Unmarshal(args, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			field := te.Field
			if field == "" {
				field = "args"
			}
			return connector.BadRequest(field, "must be %s, not %s", jsonKind(te.Type.Kind().String()), te.Value)
		}
		return connector.BadRequest("args", "not a JSON object: %v", err)
	}
	return nil
}

func jsonKind(k string) string {
	switch k {
	case "string":
		return "a string"
	case "slice":
		return "an array"
	case "struct", "map":
		return "an object"
	case "bool":
		return "true or false"
	}
	return "a number"
}

func blank(s string) bool {
	return strings.IndexFunc(s, func(r rune) bool { return !unicode.IsSpace(r) && unicode.IsPrint(r) }) < 0
}

func chatPath(room string) string { return "/api/v1/agent/chats/" + url.PathEscape(room) }

// dotSegment reports whether id is "." or "..": url.PathEscape keeps them,
// and a server or proxy would resolve them into another endpoint's path.
func dotSegment(id string) bool { return id == "." || id == ".." }

// Mention is one mention in send_message: id (authoritative) or handle.
type Mention struct {
	ID     string `json:"id,omitempty"`
	Handle string `json:"handle,omitempty"`
	Name   string `json:"name,omitempty"`
	Kind   string `json:"kind,omitempty"`
}

func buildSendMessage(c *Connector, room string, args json.RawMessage) (request, error) {
	var a struct {
		Content  *string   `json:"content"`
		Mentions []Mention `json:"mentions"`
	}
	if err := decode(args, &a); err != nil {
		return request{}, err
	}
	switch {
	case a.Content == nil:
		return request{}, connector.BadRequest("content", "is required")
	case blank(*a.Content):
		return request{}, connector.BadRequest("content", "is blank")
	case len(a.Mentions) == 0:
		return request{}, connector.BadRequest("mentions", "Band requires at least one mention on a text message (code mentions_required)")
	}
	seen := map[string]bool{}
	for i, m := range a.Mentions {
		f := fmt.Sprintf("mentions[%d]", i)
		key := "id:" + m.ID
		switch {
		case m.ID == "" && m.Handle == "":
			return request{}, connector.BadRequest(f, "needs an id or a handle (code mention_missing_identifier)")
		case m.ID != "" && m.ID == c.agentID():
			return request{}, connector.BadRequest(f+".id", "an agent cannot mention itself (code cannot_mention_self)")
		case m.Kind != "" && m.Kind != "mention" && m.Kind != "reference":
			return request{}, connector.BadRequest(f+".kind", "%q is not mention or reference (code invalid_mention_kind)", m.Kind)
		}
		if m.ID == "" {
			key = "handle:" + m.Handle
		}
		if seen[key] {
			return request{}, connector.BadRequest(f, "duplicates an earlier mention (code duplicate_mentions)")
		}
		seen[key] = true
	}
	return request{http.MethodPost, chatPath(room) + "/messages",
		map[string]any{"message": map[string]any{"content": *a.Content, "mentions": a.Mentions}}}, nil
}

var eventTypes = []string{"tool_call", "tool_result", "thought", "error", "task", "attention"}

func buildPostEvent(_ *Connector, room string, args json.RawMessage) (request, error) {
	var a struct {
		Content     *string         `json:"content"`
		MessageType string          `json:"message_type"`
		Metadata    json.RawMessage `json:"metadata"`
	}
	if err := decode(args, &a); err != nil {
		return request{}, err
	}
	switch {
	case a.Content == nil:
		return request{}, connector.BadRequest("content", "is required")
	case blank(*a.Content):
		return request{}, connector.BadRequest("content", "is blank")
	case utf8.RuneCountInString(*a.Content) > maxEventContent:
		return request{}, connector.BadRequest("content", "has %d characters; Band allows %d", utf8.RuneCountInString(*a.Content), maxEventContent)
	case !slices.Contains(eventTypes, a.MessageType):
		return request{}, connector.BadRequest("message_type", "%q is not one of %s", a.MessageType, strings.Join(eventTypes, ", "))
	case len(a.Metadata) > maxEventMetadata:
		return request{}, connector.BadRequest("metadata", "is %d bytes; Band allows %d", len(a.Metadata), maxEventMetadata)
	case len(a.Metadata) > 0 && a.Metadata[0] != '{' && string(a.Metadata) != "null":
		return request{}, connector.BadRequest("metadata", "must be an object")
	}
	ev := map[string]any{"content": *a.Content, "message_type": a.MessageType}
	if len(a.Metadata) > 0 && string(a.Metadata) != "null" {
		ev["metadata"] = a.Metadata
	}
	return request{http.MethodPost, chatPath(room) + "/events", map[string]any{"event": ev}}, nil
}

func buildMark(state string) func(*Connector, string, json.RawMessage) (request, error) {
	return func(_ *Connector, room string, args json.RawMessage) (request, error) {
		var a struct {
			MessageID string `json:"message_id"`
			Error     string `json:"error"`
		}
		if err := decode(args, &a); err != nil {
			return request{}, err
		}
		if a.MessageID == "" {
			return request{}, connector.BadRequest("message_id", "is required")
		}
		if dotSegment(a.MessageID) {
			return request{}, connector.BadRequest("message_id", "%q is not a message id", a.MessageID)
		}
		path := chatPath(room) + "/messages/" + url.PathEscape(a.MessageID) + "/" + state
		if state != "failed" {
			return request{http.MethodPost, path, nil}, nil
		}
		if blank(a.Error) {
			return request{}, connector.BadRequest("error", "is required and must not be blank for mark_failed")
		}
		return request{http.MethodPost, path, map[string]string{"error": a.Error}}, nil
	}
}

func buildCreateChat(_ *Connector, _ string, args json.RawMessage) (request, error) {
	var a struct {
		Title  *string `json:"title"`
		TaskID *string `json:"task_id"`
	}
	if err := decode(args, &a); err != nil {
		return request{}, err
	}
	chat := map[string]any{}
	if a.Title != nil {
		if utf8.RuneCountInString(*a.Title) > maxTitle {
			return request{}, connector.BadRequest("title", "is longer than %d characters", maxTitle)
		}
		chat["title"] = *a.Title
	}
	if a.TaskID != nil {
		chat["task_id"] = *a.TaskID
	}
	return request{http.MethodPost, "/api/v1/agent/chats", map[string]any{"chat": chat}}, nil
}

func buildUpdateChat(_ *Connector, room string, args json.RawMessage) (request, error) {
	var a struct {
		Title string `json:"title"`
	}
	if err := decode(args, &a); err != nil {
		return request{}, err
	}
	if n := utf8.RuneCountInString(a.Title); n == 0 || n > maxTitle {
		return request{}, connector.BadRequest("title", "must have 1 to %d characters", maxTitle)
	}
	return request{http.MethodPatch, chatPath(room), map[string]any{"chat": map[string]string{"title": a.Title}}}, nil
}

func buildAddParticipant(_ *Connector, room string, args json.RawMessage) (request, error) {
	var a struct {
		ParticipantID string `json:"participant_id"`
		Role          string `json:"role"`
	}
	if err := decode(args, &a); err != nil {
		return request{}, err
	}
	if a.ParticipantID == "" {
		return request{}, connector.BadRequest("participant_id", "is required")
	}
	if a.Role != "" && !slices.Contains([]string{"owner", "admin", "member"}, a.Role) {
		return request{}, connector.BadRequest("role", "%q is not owner, admin or member", a.Role)
	}
	p := map[string]string{"participant_id": a.ParticipantID}
	if a.Role != "" {
		p["role"] = a.Role
	}
	return request{http.MethodPost, chatPath(room) + "/participants", map[string]any{"participant": p}}, nil
}

func buildRemoveParticipant(_ *Connector, room string, args json.RawMessage) (request, error) {
	var a struct {
		ParticipantID string `json:"participant_id"`
	}
	if err := decode(args, &a); err != nil {
		return request{}, err
	}
	if a.ParticipantID == "" {
		return request{}, connector.BadRequest("participant_id", "is required")
	}
	if dotSegment(a.ParticipantID) {
		return request{}, connector.BadRequest("participant_id", "%q is not a participant id", a.ParticipantID)
	}
	return request{http.MethodDelete, chatPath(room) + "/participants/" + url.PathEscape(a.ParticipantID), nil}, nil
}

func buildSetActivity(_ *Connector, room string, args json.RawMessage) (request, error) {
	var a struct {
		Working *bool `json:"working"`
	}
	if err := decode(args, &a); err != nil {
		return request{}, err
	}
	if a.Working == nil {
		return request{}, connector.BadRequest("working", "is required (true or false)")
	}
	return request{http.MethodPost, chatPath(room) + "/activity", map[string]bool{"working": *a.Working}}, nil
}

// buildContact passes the args object through after checking that one of
// handle / contact_id is present (required names the one that must be).
func buildContact(path, required string) func(*Connector, string, json.RawMessage) (request, error) {
	return func(_ *Connector, _ string, args json.RawMessage) (request, error) {
		var a struct {
			Handle    string `json:"handle"`
			ContactID string `json:"contact_id"`
			Message   string `json:"message"`
		}
		if err := decode(args, &a); err != nil {
			return request{}, err
		}
		body := map[string]string{}
		switch {
		case required == "handle" && a.Handle == "":
			return request{}, connector.BadRequest("handle", "is required")
		case required == "" && a.Handle == "" && a.ContactID == "":
			return request{}, connector.BadRequest("handle", "handle or contact_id is required")
		}
		for k, v := range map[string]string{"handle": a.Handle, "contact_id": a.ContactID, "message": a.Message} {
			if v != "" {
				body[k] = v
			}
		}
		return request{http.MethodPost, path, body}, nil
	}
}

func buildRespondContact(_ *Connector, _ string, args json.RawMessage) (request, error) {
	var a struct {
		Action    string `json:"action"`
		Handle    string `json:"handle"`
		RequestID string `json:"request_id"`
	}
	if err := decode(args, &a); err != nil {
		return request{}, err
	}
	if !slices.Contains([]string{"approve", "reject", "cancel"}, a.Action) {
		return request{}, connector.BadRequest("action", "%q is not approve, reject or cancel", a.Action)
	}
	if a.Handle == "" && a.RequestID == "" {
		return request{}, connector.BadRequest("request_id", "request_id or handle is required")
	}
	body := map[string]string{"action": a.Action}
	if a.Handle != "" {
		body["handle"] = a.Handle
	}
	if a.RequestID != "" {
		body["request_id"] = a.RequestID
	}
	return request{http.MethodPost, "/api/v1/agent/contacts/requests/respond", body}, nil
}

func get(path string) func(*Connector, string, json.RawMessage) (request, error) {
	return func(*Connector, string, json.RawMessage) (request, error) {
		return request{http.MethodGet, path, nil}, nil
	}
}

func getQuery(path string, params ...string) func(*Connector, string, json.RawMessage) (request, error) {
	return func(_ *Connector, _ string, args json.RawMessage) (request, error) {
		q, err := query(args, params)
		if err != nil {
			return request{}, err
		}
		return request{http.MethodGet, path + q, nil}, nil
	}
}

func getRoom(suffix string, params ...string) func(*Connector, string, json.RawMessage) (request, error) {
	return func(_ *Connector, room string, args json.RawMessage) (request, error) {
		q, err := query(args, params)
		if err != nil {
			return request{}, err
		}
		return request{http.MethodGet, chatPath(room) + suffix + q, nil}, nil
	}
}

// query turns the named args (strings or numbers) into a query string.
func query(args json.RawMessage, params []string) (string, error) {
	var m map[string]any
	if err := decode(args, &m); err != nil {
		return "", err
	}
	v := url.Values{}
	for _, p := range params {
		switch x := m[p].(type) {
		case nil:
		case string:
			v.Set(p, x)
		case float64:
			v.Set(p, fmt.Sprint(x))
		default:
			return "", connector.BadRequest(p, "must be a string or a number")
		}
	}
	if len(v) == 0 {
		return "", nil
	}
	return "?" + v.Encode(), nil
}
