package chatapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/bridgeworks/bridge/connector"
)

// The events a chat command emits, in the agent's (or team's) room.
const (
	EventTextDelta    = "text_delta"        // one streamed fragment: index, text
	EventToolStart    = "tool_start"        // the agent started a tool: tool, args
	EventToolEnd      = "tool_end"          // the tool finished: tool, result
	EventCompleted    = "message_completed" // the whole reply: text, tool_calls, fragments
	EventFailed       = "message_failed"    // the reply broke off: reason, error, partial text
	EventTeamResponse = "team_response"     // one member's answer in a team chat
	EventTeamSummary  = "team_summary"      // the team's summary, after every response
)

// Why a streamed reply failed (message_failed's reason).
const (
	reasonCut      = "stream_cut"     // the stream ended before done
	reasonStalled  = "stream_stalled" // nothing for stream_idle_timeout
	reasonError    = "agent_error"    // the platform sent an error chunk
	reasonTimeout  = "timeout"        // chat_timeout passed
	reasonCanceled = "canceled"       // the bridge stopped the command
)

type chatArgs struct {
	Message        *string         `json:"message"`
	Context        json.RawMessage `json:"context"`
	ConversationID string          `json:"conversation_id"`
	Stream         *bool           `json:"stream"`
}

// chatBody checks a chat's arguments and builds the request body.
func chatBody(args json.RawMessage) (map[string]any, bool, error) {
	var a chatArgs
	if err := decode(args, &a); err != nil {
		return nil, false, err
	}
	if a.Message == nil {
		return nil, false, connector.BadRequest("message", "is required")
	}
	if strings.TrimSpace(*a.Message) == "" {
		return nil, false, connector.BadRequest("message", "is blank")
	}
	body := map[string]any{"message": *a.Message}
	if len(a.Context) > 0 && string(a.Context) != "null" {
		var turns []struct {
			Role    *string `json:"role"`
			Content *string `json:"content"`
		}
		if json.Unmarshal(a.Context, &turns) != nil {
			return nil, false, connector.BadRequest("context", "must be a list of {role, content}")
		}
		for i, t := range turns {
			if t.Role == nil || t.Content == nil {
				return nil, false, connector.BadRequest(fmt.Sprintf("context[%d]", i), "needs role and content (strings)")
			}
		}
		body["context"] = a.Context
	}
	if a.ConversationID != "" {
		body["conversation_id"] = a.ConversationID
	}
	return body, a.Stream == nil || *a.Stream, nil
}

// chatErr classifies the failure of a chat call. A refusal the platform
// answers before acting (429, 503, 4xx) is returned as is: retried or not
// by its status. A timeout, a 5xx other than 503, or a transport failure
// after the request was written may have taken the turn: Sent, never sent
// again (a second turn costs credits).
func chatErr(sent bool, err error) error {
	var pe *connector.PlatformError
	if errors.As(err, &pe) {
		if pe.Status == http.StatusRequestTimeout || (pe.Status >= 500 && pe.Status != http.StatusServiceUnavailable) {
			return connector.Sent(err)
		}
		return err
	}
	if sent && !connector.WasSent(err) {
		return connector.Sent(err)
	}
	return err
}

type toolCall struct {
	Name   string          `json:"name"`
	Args   json.RawMessage `json:"args,omitempty"`
	Result string          `json:"result"`
}

// completion is message_completed's data (and the command's result).
type completion struct {
	AgentID        string     `json:"agent_id"`
	AgentName      string     `json:"agent_name,omitempty"`
	ConversationID string     `json:"conversation_id,omitempty"`
	Text           string     `json:"text"`
	Fragments      int        `json:"fragments"`
	ToolCalls      []toolCall `json:"tool_calls"`
}

// failure is message_failed's data.
type failure struct {
	AgentID        string     `json:"agent_id"`
	ConversationID string     `json:"conversation_id,omitempty"`
	Reason         string     `json:"reason"`
	Error          string     `json:"error"`
	Text           string     `json:"text"` // what arrived before the failure
	Fragments      int        `json:"fragments"`
	ToolCalls      []toolCall `json:"tool_calls"`
	// Retryable: sending the chat again may work; the bridge never does
	// it by itself (the platform may have recorded the turn).
	Retryable bool `json:"retryable"`
}

func event(room, name string, data any) connector.Event {
	b, _ := json.Marshal(data) // plain structs and maps of JSON values
	return connector.Event{Room: room, Name: name, Data: b}
}

// chat runs the chat command: streamed (default) or blocking.
func (c *Connector) chat(ctx context.Context, cmd connector.Command, emit func(connector.Event) error) (connector.Response, error) {
	body, stream, err := chatBody(cmd.Args)
	if err != nil {
		return connector.Response{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.st.ChatTimeout)
	defer cancel()
	conv, _ := body["conversation_id"].(string)
	if !stream {
		return c.chatOnce(ctx, cmd.Room, conv, body, emit)
	}
	return c.chatStream(ctx, cmd.Room, conv, body, emit)
}

// chatOnce is POST /agents/:id/chat: one message_completed.
func (c *Connector) chatOnce(ctx context.Context, agent, conv string, body map[string]any, emit func(connector.Event) error) (connector.Response, error) {
	b, status, err := c.rest.readAll(ctx, call{method: http.MethodPost, path: agentPath(agent, "/chat"), body: body, stream: true})
	if err != nil {
		return connector.Response{Status: status}, chatErr(true, err)
	}
	var a struct {
		Response  *string    `json:"response"`
		Content   string     `json:"content"`
		AgentID   string     `json:"agent_id"`
		AgentName string     `json:"agent_name"`
		ToolCalls []toolCall `json:"tool_calls"`
	}
	if err := json.Unmarshal(b, &a); err != nil {
		return connector.Response{Status: status}, connector.Sent(fmt.Errorf("chatapi: chat answer is not JSON: %w", err))
	}
	done := completion{AgentID: agent, AgentName: a.AgentName, ConversationID: conv, Text: a.Content, ToolCalls: a.ToolCalls}
	if a.Response != nil {
		done.Text = *a.Response
	}
	if done.ToolCalls == nil {
		done.ToolCalls = []toolCall{}
	}
	ev := event(agent, EventCompleted, done)
	if err := emit(ev); err != nil {
		return connector.Response{Status: status}, connector.Sent(err)
	}
	return connector.Response{Status: status, Data: ev.Data}, nil
}

// chatStream is POST /agents/:id/chat/stream: a text_delta per fragment
// (tool_start/tool_end around tools), then message_completed; a stream
// that breaks off ends with message_failed and a Sent error.
func (c *Connector) chatStream(ctx context.Context, agent, conv string, body map[string]any, emit func(connector.Event) error) (connector.Response, error) {
	rctx, rcancel := context.WithCancel(ctx)
	defer rcancel()
	resp, sent, err := c.rest.do(rctx, call{method: http.MethodPost, path: agentPath(agent, "/chat/stream"), body: body, stream: true})
	if err != nil {
		return connector.Response{}, chatErr(sent, err)
	}
	defer resp.Body.Close()
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "text/event-stream" {
		return connector.Response{Status: resp.StatusCode}, connector.Sent(fmt.Errorf("chatapi: chat stream answer is %q, not an event stream", mt))
	}
	var stalled atomic.Bool
	idle := time.AfterFunc(c.st.StreamIdleTimeout, func() {
		stalled.Store(true)
		rcancel()
	})
	defer idle.Stop()

	var text strings.Builder
	st := completion{AgentID: agent, ConversationID: conv, ToolCalls: []toolCall{}}
	fail := func(reason string, cause error) (connector.Response, error) {
		st.Text = text.String()
		f := failure{AgentID: agent, ConversationID: conv, Reason: reason, Error: cause.Error(), Text: st.Text,
			Fragments: st.Fragments, ToolCalls: st.ToolCalls, Retryable: true}
		err := fmt.Errorf("chatapi: streamed reply of agent %s failed after %d fragments (%s): %w", agent, st.Fragments, reason, cause)
		if eerr := emit(event(agent, EventFailed, f)); eerr != nil {
			err = errors.Join(err, eerr)
		}
		return connector.Response{Status: resp.StatusCode}, connector.Sent(err)
	}
	r := newSSEReader(resp.Body)
	doneSeen := false
	for {
		ev, err := r.Next()
		if err != nil {
			if doneSeen {
				break // the reply is whole; only the closing [DONE] is missing
			}
			switch {
			case stalled.Load():
				return fail(reasonStalled, fmt.Errorf("nothing for %s", c.st.StreamIdleTimeout))
			case errors.Is(ctx.Err(), context.DeadlineExceeded):
				return fail(reasonTimeout, fmt.Errorf("chat_timeout %s passed", c.st.ChatTimeout))
			case ctx.Err() != nil:
				return fail(reasonCanceled, ctx.Err())
			case errors.Is(err, io.EOF):
				err = errors.New("the stream ended before done")
			}
			return fail(reasonCut, err)
		}
		idle.Reset(c.st.StreamIdleTimeout)
		if ev.Data == "[DONE]" {
			break
		}
		var ch struct {
			Type    string          `json:"type"`
			Content string          `json:"content"`
			Tool    string          `json:"tool"`
			Args    json.RawMessage `json:"args"`
		}
		if json.Unmarshal([]byte(ev.Data), &ch) != nil {
			continue // not JSON: skipped, as the vendor's SDK does
		}
		var out *connector.Event
		switch ch.Type {
		case "text", "token":
			e := event(agent, EventTextDelta, map[string]any{"index": st.Fragments, "text": ch.Content})
			out = &e
			text.WriteString(ch.Content)
			st.Fragments++
		case "tool_start":
			st.ToolCalls = append(st.ToolCalls, toolCall{Name: ch.Tool, Args: ch.Args})
			e := event(agent, EventToolStart, map[string]any{"tool": ch.Tool, "args": ch.Args})
			out = &e
		case "tool_end":
			for i := len(st.ToolCalls) - 1; i >= 0; i-- {
				if st.ToolCalls[i].Name == ch.Tool {
					st.ToolCalls[i].Result = ch.Content
					break
				}
			}
			e := event(agent, EventToolEnd, map[string]any{"tool": ch.Tool, "result": ch.Content})
			out = &e
		case "done":
			doneSeen = true
		case "error":
			msg := ch.Content
			if msg == "" {
				msg = "the platform sent an error chunk"
			}
			return fail(reasonError, errors.New(msg))
		}
		if out != nil {
			if err := emit(*out); err != nil {
				return connector.Response{Status: resp.StatusCode}, connector.Sent(fmt.Errorf("chatapi: streamed reply of agent %s: %w", agent, err))
			}
		}
	}
	st.Text = text.String()
	done := event(agent, EventCompleted, st)
	if err := emit(done); err != nil {
		return connector.Response{Status: resp.StatusCode}, connector.Sent(err)
	}
	return connector.Response{Status: resp.StatusCode, Data: done.Data}, nil
}

// teamChat is POST /teams/:id/chat: a team_response per member, then a
// team_summary.
func (c *Connector) teamChat(ctx context.Context, cmd connector.Command, emit func(connector.Event) error) (connector.Response, error) {
	var a struct {
		Message *string `json:"message"`
		Mode    string  `json:"mode"`
	}
	if err := decode(cmd.Args, &a); err != nil {
		return connector.Response{}, err
	}
	if a.Message == nil || strings.TrimSpace(*a.Message) == "" {
		return connector.Response{}, connector.BadRequest("message", "is required and must not be blank")
	}
	body := map[string]any{"message": *a.Message}
	if a.Mode != "" {
		body["mode"] = a.Mode
	}
	ctx, cancel := context.WithTimeout(ctx, c.st.ChatTimeout)
	defer cancel()
	b, status, err := c.rest.readAll(ctx, call{method: http.MethodPost, path: teamPath(cmd.Room, "/chat"), body: body, stream: true})
	if err != nil {
		return connector.Response{Status: status}, chatErr(true, err)
	}
	var ans struct {
		Responses    []map[string]json.RawMessage `json:"responses"`
		Summary      string                       `json:"summary"`
		Mode         string                       `json:"mode"`
		AutoSelected bool                         `json:"auto_selected"`
	}
	if err := json.Unmarshal(b, &ans); err != nil {
		return connector.Response{Status: status}, connector.Sent(fmt.Errorf("chatapi: team chat answer is not JSON: %w", err))
	}
	mode, _ := json.Marshal(ans.Mode)
	for i, r := range ans.Responses {
		idx, _ := json.Marshal(i)
		r["index"], r["mode"] = idx, mode
		if err := emit(event(cmd.Room, EventTeamResponse, r)); err != nil {
			return connector.Response{Status: status}, connector.Sent(err)
		}
	}
	sum := map[string]any{"team_id": cmd.Room, "summary": ans.Summary, "mode": ans.Mode, "responses": len(ans.Responses), "auto_selected": ans.AutoSelected}
	if err := emit(event(cmd.Room, EventTeamSummary, sum)); err != nil {
		return connector.Response{Status: status}, connector.Sent(err)
	}
	return connector.Response{Status: status, Data: b}, nil
}
