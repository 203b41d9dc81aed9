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

// Reconcile lists the records of send_message or post_event commands that
// could be an earlier execution of cmd by a crashed run: in the room's
// context (the agent's own messages and events), those with the same
// content and type inserted since the command was stored, oldest first.
// Band keeps no client-side id on a message (a text message takes only
// content and mentions), so content is all there is to match: the bridge
// tells the commands apart by the message ids (Ref) it has claimed.
// mark_processed is found when Band lists its message as processed. Other
// commands are either harmless to repeat or refused by Band when repeated,
// so they list nothing and run again.
func (c *Connector) Reconcile(ctx context.Context, cmd connector.Command) ([]connector.Response, error) {
	var a struct {
		Content     string `json:"content"`
		MessageType string `json:"message_type"`
	}
	switch cmd.Name {
	case "send_message":
		a.MessageType = "text"
	case "post_event":
	case cmdMarkProcessed:
		return c.reconcileProcessed(ctx, cmd)
	default:
		return nil, nil
	}
	if cmd.Room == "" || json.Unmarshal(cmd.Args, &a) != nil || a.Content == "" {
		return nil, nil
	}
	since := cmd.Since.Add(-clockSkew)
	cursor := ""
	var found []connector.Response
	for range 200 { // at most 20,000 messages back
		path := chatPath(cmd.Room) + "/context?limit=100"
		if cursor != "" {
			path += "&cursor=" + url.QueryEscape(cursor)
		}
		items, meta, err := c.rest.list(ctx, path)
		if err != nil {
			return nil, err
		}
		for _, raw := range items {
			var m struct {
				ID          string    `json:"id"`
				Content     string    `json:"content"`
				SenderID    string    `json:"sender_id"`
				MessageType string    `json:"message_type"`
				InsertedAt  time.Time `json:"inserted_at"`
			}
			if json.Unmarshal(raw, &m) != nil || m.SenderID != c.agentID() || m.MessageType != a.MessageType {
				continue
			}
			// Band prepends "@Name " when the content lacks a mention.
			if m.ID != "" && (m.Content == a.Content || strings.HasSuffix(m.Content, " "+a.Content)) && !m.InsertedAt.Before(since) {
				found = append(found, connector.Response{Status: http.StatusOK, Data: raw, Ref: m.ID})
			}
		}
		if !meta.HasMore || meta.NextCursor == "" || meta.NextCursor == cursor {
			break
		}
		cursor = meta.NextCursor
	}
	return found, nil
}

// reconcileProcessed finds the message of a mark_processed command among the
// room's processed messages (oldest first; at most 20,000 looked at): Band
// records one processing state per message and agent, so the message
// listed as processed is the earlier execution. Its Ref is the message id
// with a prefix of its own, apart from the ids of messages the agent sent.
func (c *Connector) reconcileProcessed(ctx context.Context, cmd connector.Command) ([]connector.Response, error) {
	var a struct {
		MessageID string `json:"message_id"`
	}
	if cmd.Room == "" || json.Unmarshal(cmd.Args, &a) != nil || a.MessageID == "" {
		return nil, nil
	}
	cursor := ""
	for range 200 {
		path := chatPath(cmd.Room) + "/messages?status=processed&limit=100"
		if cursor != "" {
			path += "&cursor=" + url.QueryEscape(cursor)
		}
		items, meta, err := c.rest.list(ctx, path)
		if err != nil {
			return nil, err
		}
		for _, raw := range items {
			var m struct {
				ID string `json:"id"`
			}
			if json.Unmarshal(raw, &m) == nil && m.ID == a.MessageID {
				return []connector.Response{{Status: http.StatusOK, Data: raw, Ref: "processed:" + m.ID}}, nil
			}
		}
		if !meta.HasMore || meta.NextCursor == "" || meta.NextCursor == cursor {
			return nil, nil
		}
		cursor = meta.NextCursor
	}
	return nil, nil
}
