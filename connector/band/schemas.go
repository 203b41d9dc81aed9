package band

import "encoding/json"

// CommandSchemas describes the arguments of every command in [Commands]
// as JSON Schema, read off the checks of each command's build function in
// commands.go (Band ignores arguments it does not know).
func CommandSchemas() map[string]json.RawMessage {
	out := make(map[string]json.RawMessage, len(commandSchemas))
	for k, v := range commandSchemas {
		out[k] = json.RawMessage(v)
	}
	return out
}

// CommandSchemas is the [connector.CommandSchemer] ability.
func (c *Connector) CommandSchemas() map[string]json.RawMessage { return CommandSchemas() }

// Schema fragments shared by several commands.
const (
	noArgs      = `{"type":"object","properties":{}}`
	messageID   = `"message_id":{"type":"string","minLength":1,"description":"The Band message id."}`
	queryParam  = `{"type":["string","number"]}`
	pageParams  = `"page":` + queryParam + `,"page_size":` + queryParam
	pagedReads  = `{"type":"object","properties":{` + pageParams + `}}`
	participant = `"participant_id":{"type":"string","minLength":1,"description":"The user's or agent's id."}`
)

var commandSchemas = map[string]string{
	"send_message": `{"type":"object","description":"Post a text message in the room; Band requires at least one mention.",
		"properties":{
			"content":{"type":"string","minLength":1,"description":"The message text; not blank."},
			"mentions":{"type":"array","minItems":1,"description":"Who the message mentions; each needs an id or a handle, no duplicates, not the agent itself.",
				"items":{"type":"object","properties":{
					"id":{"type":"string","description":"The participant's id (authoritative)."},
					"handle":{"type":"string","description":"The participant's handle, when the id is not known."},
					"name":{"type":"string"},
					"kind":{"type":"string","enum":["mention","reference"]}},
				"anyOf":[{"required":["id"]},{"required":["handle"]}]}}},
		"required":["content","mentions"]}`,
	"post_event": `{"type":"object","description":"Post an event (a tool call, a thought…) in the room.",
		"properties":{
			"content":{"type":"string","minLength":1,"maxLength":16384,"description":"The event's text; not blank."},
			"message_type":{"type":"string","enum":["tool_call","tool_result","thought","error","task","attention"]},
			"metadata":{"type":"object","description":"Free-form metadata, at most 65536 bytes of JSON."}},
		"required":["content","message_type"]}`,
	"mark_processing": `{"type":"object","properties":{` + messageID + `},"required":["message_id"]}`,
	"mark_processed":  `{"type":"object","properties":{` + messageID + `},"required":["message_id"]}`,
	"mark_failed": `{"type":"object","properties":{` + messageID + `,
			"error":{"type":"string","minLength":1,"description":"Why the message failed; not blank."}},
		"required":["message_id","error"]}`,
	"create_chat": `{"type":"object","description":"Create a chat; the agent is its owner.","properties":{
			"title":{"type":"string","maxLength":120},
			"task_id":{"type":"string"}}}`,
	"update_chat": `{"type":"object","properties":{"title":{"type":"string","minLength":1,"maxLength":120}},"required":["title"]}`,
	"add_participant": `{"type":"object","properties":{` + participant + `,
			"role":{"type":"string","enum":["owner","admin","member"]}},
		"required":["participant_id"]}`,
	"remove_participant": `{"type":"object","properties":{` + participant + `},"required":["participant_id"]}`,
	"set_activity": `{"type":"object","description":"Show or clear the agent's working indicator in the room.",
		"properties":{"working":{"type":"boolean"}},"required":["working"]}`,
	"add_contact": `{"type":"object","properties":{
			"handle":{"type":"string","minLength":1},
			"message":{"type":"string","description":"A note sent with the request."}},
		"required":["handle"]}`,
	"remove_contact": `{"type":"object","description":"Give handle or contact_id.","properties":{
			"handle":{"type":"string"},
			"contact_id":{"type":"string"}},
		"anyOf":[{"required":["handle"]},{"required":["contact_id"]}]}`,
	"respond_contact_request": `{"type":"object","description":"Answer a contact request, named by request_id or handle.","properties":{
			"action":{"type":"string","enum":["approve","reject","cancel"]},
			"request_id":{"type":"string"},
			"handle":{"type":"string"}},
		"required":["action"],
		"anyOf":[{"required":["request_id"]},{"required":["handle"]}]}`,
	"me":                noArgs,
	"peers":             `{"type":"object","properties":{` + pageParams + `,"not_in_chat":{"type":["string","number"],"description":"A chat id: only peers not in it."}}}`,
	"list_chats":        pagedReads,
	"get_chat":          noArgs,
	"list_messages":     `{"type":"object","properties":{"status":{"type":"string"},"cursor":` + queryParam + `,"limit":` + queryParam + `,` + pageParams + `}}`,
	"next_message":      noArgs,
	"context":           `{"type":"object","properties":{"cursor":` + queryParam + `,"limit":` + queryParam + `}}`,
	"list_participants": noArgs,
	"contacts":          pagedReads,
	"contact_requests":  pagedReads,
}
