package band

import (
	"encoding/json"

	"github.com/bridgeworks/bridge/connector"
)

// Band keeps a processing state per message: an agent marks a message it
// took (processing) and then processed or failed (with a reason). The
// message is the one a message_created event carries (its payload's "id").

// The event whose processing state Band tracks, and the commands that
// report it (see commandTable).
const (
	eventMessageCreated = "message_created"
	cmdMarkProcessing   = "mark_processing"
	cmdMarkProcessed    = "mark_processed"
	cmdMarkFailed       = "mark_failed"
)

var (
	_ connector.ProcessingTracker = (*Connector)(nil)
	_ connector.Notifier          = (*Connector)(nil)
)

// ProcessingRef returns the message id of a message_created event.
func (c *Connector) ProcessingRef(event string, data json.RawMessage) (string, bool) {
	if event != eventMessageCreated {
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

// ProcessingCommand is mark_processing, mark_processed or mark_failed for
// message id in room, {"message_id"} with "error" for a failure.
func (c *Connector) ProcessingCommand(state connector.ProcessingState, room, id, reason string) connector.Command {
	name := cmdMarkProcessing
	args := map[string]string{"message_id": id}
	switch state {
	case connector.Processed:
		name = cmdMarkProcessed
	case connector.Failed:
		name = cmdMarkFailed
		if reason == "" {
			reason = "failed" // Band refuses a blank reason
		}
		args["error"] = reason
	}
	b, _ := json.Marshal(args) // a map of strings always encodes
	return connector.Command{Name: name, Room: room, Args: b}
}
