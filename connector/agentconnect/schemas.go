package agentconnect

import "encoding/json"

// CommandNames lists the commands the connector executes ([Commands]):
// the only command names the bridge uses as metric labels.
func (c *Connector) CommandNames() []string { return Commands() }

// CommandSchemas describes the arguments of every command in [Commands]
// as JSON Schema, read off each command's argument checks (commands.go).
// Most commands refuse arguments they do not know (additionalProperties
// false); create_session passes its request through as written.
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
	strictNoArgs = `{"type":"object","properties":{},"additionalProperties":false}`
	recordedOnly = `{"type":"object","description":"AgentConnect keeps no processing state: answered by the bridge, arguments ignored.","properties":{}}`
)

var commandSchemas = map[string]string{
	"create_session": `{"type":"object","description":"A CreateSessionRequest, passed through: human_agent takes exactly one agent, agent_agent two.",
		"properties":{
			"session_type":{"type":"string","enum":["human_agent","agent_agent"]},
			"agents":{"type":"object","minProperties":1,"maxProperties":2,"description":"The session's agents by key.",
				"additionalProperties":{"type":"object","properties":{"provider":{"type":"string","enum":["openai","anthropic","groq","google"]}},"required":["provider"]}}},
		"required":["session_type","agents"]}`,
	"send_message": `{"type":"object","description":"Send a text frame on the session's (the room's) socket.",
		"properties":{
			"content":{"type":"string","minLength":1,"description":"Not blank; at most 524288 bytes."},
			"sender":{"type":"string","description":"With receiver, agent ids of an agent_agent session."},
			"receiver":{"type":"string","description":"With sender."},
			"metadata":{"type":"object"}},
		"required":["content"],"additionalProperties":false}`,
	"end_session": strictNoArgs,
	"agent_message": `{"type":"object","description":"POST /api/agents/{agent_id}/message.",
		"properties":{
			"agent_id":{"type":"string","minLength":1,"description":"The sending agent's id."},
			"receiver_id":{"type":"string","minLength":1},
			"content":{"type":"string","minLength":1,"description":"Not blank."},
			"message_type":{"type":"string","default":"text"},
			"structured_data":{},
			"metadata":{}},
		"required":["agent_id","receiver_id","content"],"additionalProperties":false}`,
	"providers": strictNoArgs,
	"agents":    strictNoArgs,
	"agent_status": `{"type":"object","description":"One agent's status: agent_id, or else the room's first AI agent.",
		"properties":{"agent_id":{"type":"string","minLength":1}},"additionalProperties":false}`,
	"sessions":        strictNoArgs,
	"mark_processing": recordedOnly,
	"mark_processed":  recordedOnly,
	"mark_failed":     recordedOnly,
}
