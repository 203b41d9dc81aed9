package chatapi

import "encoding/json"

// CommandNames lists the commands the connector executes ([Commands]):
// the only command names the bridge uses as metric labels.
func (c *Connector) CommandNames() []string { return Commands() }

// CommandSchemas describes the arguments of every command in [Commands]
// as JSON Schema, read off each command's argument checks (commands.go,
// chat.go). Arguments the connector does not know are ignored.
func CommandSchemas() map[string]json.RawMessage {
	out := make(map[string]json.RawMessage, len(commandSchemas))
	for k, v := range commandSchemas {
		out[k] = json.RawMessage(v)
	}
	return out
}

// CommandSchemas is the [connector.CommandSchemer] ability.
func (c *Connector) CommandSchemas() map[string]json.RawMessage { return CommandSchemas() }

const (
	noArgs   = `{"type":"object","properties":{}}`
	markRead = `{"type":"object","description":"Mark inbox items read: message_id or message_ids (one id per command when settings.mark_read is \"id\").",
		"properties":{
			"message_id":{"type":"string","minLength":1},
			"message_ids":{"type":"array","minItems":1,"items":{"type":"string"}}},
		"anyOf":[{"required":["message_id"]},{"required":["message_ids"]}]}`
	recordedOnly = `{"type":"object","description":"The platform keeps no such state: answered by the bridge, arguments ignored.","properties":{}}`
)

var commandSchemas = map[string]string{
	"chat": `{"type":"object","description":"One chat turn with the agent (the room); never sent twice.",
		"properties":{
			"message":{"type":"string","minLength":1,"description":"The user's message; not blank."},
			"context":{"type":"array","description":"Earlier turns.","items":{"type":"object",
				"properties":{"role":{"type":"string"},"content":{"type":"string"}},"required":["role","content"]}},
			"conversation_id":{"type":"string"},
			"stream":{"type":"boolean","default":true,"description":"Stream the reply as text_delta events."}},
		"required":["message"]}`,
	"team_chat": `{"type":"object","description":"One chat turn with the team (the room).",
		"properties":{
			"message":{"type":"string","minLength":1,"description":"The user's message; not blank."},
			"mode":{"type":"string","description":"The platform's team mode."}},
		"required":["message"]}`,
	"mark_read":       markRead,
	"mark_processed":  markRead,
	"mark_processing": recordedOnly,
	"mark_failed":     recordedOnly,
	"history": `{"type":"object","properties":{
			"limit":{"type":"integer","minimum":1},
			"conversation_id":{"type":"string"}}}`,
	"agents": `{"type":"object","properties":{
			"page":{"type":"integer","minimum":1},
			"per_page":{"type":"integer","minimum":1}}}`,
	"agent":         noArgs,
	"team":          noArgs,
	"conversations": noArgs,
	"inbox":         noArgs,
}
