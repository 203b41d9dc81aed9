package band

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/bridgeworks/bridge/connector"
)

// clockSkew widens the window in which Reconcile looks for an earlier
// execution: cmd.Since is the NATS server's clock, inserted_at Band's.
const clockSkew = 5 * time.Minute

// Reconcile tells whether a send_message or post_event that a crashed run
// may have executed is already in the room: it looks, in the room's context
// (the agent's own messages and events), for one with the same content and
// type inserted since the command was stored. Other commands are either
// harmless to repeat or refused by Band when repeated, so they report not
// found and run again.
func (c *Connector) Reconcile(ctx context.Context, cmd connector.Command) (connector.Response, bool, error) {
	var a struct {
		Content     string `json:"content"`
		MessageType string `json:"message_type"`
	}
	switch cmd.Name {
	case "send_message":
		a.MessageType = "text"
	case "post_event":
	default:
		return connector.Response{}, false, nil
	}
	if cmd.Room == "" || json.Unmarshal(cmd.Args, &a) != nil || a.Content == "" {
		return connector.Response{}, false, nil
	}
	since := cmd.Since.Add(-clockSkew)
	cursor := ""
	for range 200 { // at most 20,000 messages back
		path := chatPath(cmd.Room) + "/context?limit=100"
		if cursor != "" {
			path += "&cursor=" + url.QueryEscape(cursor)
		}
		items, meta, err := c.rest.list(ctx, path)
		if err != nil {
			return connector.Response{}, false, err
		}
		for _, raw := range items {
			var m struct {
				Content     string    `json:"content"`
				SenderID    string    `json:"sender_id"`
				MessageType string    `json:"message_type"`
				InsertedAt  time.Time `json:"inserted_at"`
			}
			if json.Unmarshal(raw, &m) != nil || m.SenderID != c.agentID() || m.MessageType != a.MessageType {
				continue
			}
			// Band prepends "@Name " when the content lacks a mention.
			if (m.Content == a.Content || strings.HasSuffix(m.Content, " "+a.Content)) && !m.InsertedAt.Before(since) {
				return connector.Response{Status: http.StatusOK, Data: raw}, true, nil
			}
		}
		if !meta.HasMore || meta.NextCursor == "" || meta.NextCursor == cursor {
			break
		}
		cursor = meta.NextCursor
	}
	return connector.Response{}, false, nil
}
