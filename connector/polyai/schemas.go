package polyai

import "encoding/json"

// CommandNames lists the commands the connector executes ([Commands]):
// the only command names the bridge uses as metric labels.
func (c *Connector) CommandNames() []string { return Commands() }

// CommandSchemas describes the arguments of every command in [Commands]
// as JSON Schema, read off Execute's argument checks (commands.go).
// Arguments the connector does not know are ignored.
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
	noArgs       = `{"type":"object","properties":{}}`
	recordedOnly = `{"type":"object","description":"PolyAI keeps no processing state: answered by the bridge, arguments ignored.","properties":{}}`
)

var commandSchemas = map[string]string{
	"create_session": `{"type":"object","description":"Create a session and hold it; the result carries its session_id.",
		"properties":{
			"streaming":{"type":"boolean","description":"Ask for streamed replies; default settings.streaming."},
			"join":{"type":"boolean","description":"Join the conversation as the agent when the session opens."}}}`,
	"send_message": `{"type":"object","description":"Send a user message in the session (the room).",
		"properties":{
			"text":{"type":"string","minLength":1,"description":"Not blank; at most 122880 bytes of UTF-8."},
			"metadata":{"type":"object","additionalProperties":{"type":"string"},"description":"Custom metadata sent with the event."}},
		"required":["text"]}`,
	"typing":          `{"type":"object","properties":{"typing":{"type":"boolean","description":"true: typing started; false: stopped."}},"required":["typing"]}`,
	"end_session":     noArgs,
	"join":            noArgs,
	"sessions":        noArgs,
	"mark_processing": recordedOnly,
	"mark_processed":  recordedOnly,
	"mark_failed":     recordedOnly,
}
