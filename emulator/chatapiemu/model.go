package chatapiemu

import (
	"strings"
	"time"
	"unicode/utf8"
)

// Agent is one agent of the platform. APIKey is its agent-scoped key.
type Agent struct {
	ID, Name, Description string
	APIKey                string
}

// Team is a team of agents. ChatMode is its default mode; APIKey is its
// team-scoped key.
type Team struct {
	ID, Name, ChatMode string
	AgentIDs           []string
	APIKey             string
}

// ToolCall is one scripted tool call of an answer.
type ToolCall struct {
	Name   string
	Args   map[string]any
	Result string
}

// Script is an agent's scripted answer.
type Script struct {
	// Text is the answer. Empty: "Echo: " followed by the user message.
	Text string
	// Fragments is how many SSE text chunks carry Text. 0 splits at word
	// boundaries (each chunk a word with its leading spaces); more than
	// the text has characters is clamped to one character per chunk.
	Fragments int
	// ToolCalls are streamed as tool_start/tool_end chunks before the
	// text, and returned as tool_calls by the blocking chat.
	ToolCalls []ToolCall
	// FragmentDelay is waited before each streamed text chunk (a slow
	// stream). 0: no wait.
	FragmentDelay time.Duration
}

// Turn is one message of an agent's conversation history.
type Turn struct {
	Role           string // "user" or "assistant"
	Content        string
	CreatedAt      time.Time
	ConversationID string // as sent in the chat body, "" when none
}

// InboxItem is an unread-capable message in an agent's inbox (unverified
// shape, see the package doc).
type InboxItem struct {
	ID, AgentID, Content string
	Type                 string // "message" unless set
	CreatedAt            time.Time
	ReadAt               time.Time // zero while unread: the first mark-read
	ReadCount            int       // how many mark-read calls named it
}

// Read reports whether the item was marked read.
func (it InboxItem) Read() bool { return !it.ReadAt.IsZero() }

// MarkReadCall is one accepted POST /agents/:id/mark-read.
type MarkReadCall struct {
	AgentID string
	IDs     []string // ids named in the body (nil when All)
	All     bool     // empty body or {}: every unread item
	Marked  []string // ids that went from unread to read
	At      time.Time
}

// Conversation is one conversation of an agent (unverified shape).
type Conversation struct {
	ID, AgentID, Title   string
	CreatedAt, UpdatedAt time.Time
}

// TeamResponse is one agent's part of a team chat answer.
type TeamResponse struct {
	AgentID, AgentName, Content string
}

// TeamChat is one answered POST /teams/:id/chat.
type TeamChat struct {
	TeamID, Message string
	Mode            string // the mode used (after resolving "auto")
	Requested       string // the mode in the body, "" when none
	Responses       []TeamResponse
	Summary         string
	At              time.Time
}

// RequestRecord is one HTTP request the emulator answered. Body is the
// request body (at most 64 KiB); it is kept for tests, never logged.
type RequestRecord struct {
	Method, Path, Query string
	Status              int
	Key                 string // "global", "agent:<id>", "team:<id>" or "" (none or invalid)
	Body                []byte
	Time                time.Time
	Duration            time.Duration
}

type keyKind int

const (
	keyGlobal keyKind = iota
	keyAgent
	keyTeam
)

type keyState struct {
	kind   keyKind
	id     string // agent or team id for scoped keys
	tokens float64
	last   time.Time
}

func (k *keyState) label() string {
	switch k.kind {
	case keyAgent:
		return "agent:" + k.id
	case keyTeam:
		return "team:" + k.id
	}
	return "global"
}

type agentState struct {
	Agent
	script        *Script
	history       []Turn
	chatPosts     int
	inbox         []*InboxItem
	conversations []*Conversation
}

type teamState struct {
	Team
	chats []TeamChat
	posts int
}

// answerText is the script's text for a user message.
func (sc Script) answerText(message string) string {
	if sc.Text != "" {
		return sc.Text
	}
	return "Echo: " + message
}

// fragments splits text into the chunks of a stream: n near-equal parts
// by characters, or at word boundaries when n <= 0.
func fragments(text string, n int) []string {
	if text == "" {
		return nil
	}
	if n <= 0 {
		var out []string
		start := 0
		for i := 1; i < len(text); i++ {
			if text[i] == ' ' && text[i-1] != ' ' {
				out = append(out, text[start:i])
				start = i
			}
		}
		return append(out, text[start:])
	}
	runes := utf8.RuneCountInString(text)
	n = min(n, runes)
	out := make([]string, 0, n)
	var b strings.Builder
	per, extra := runes/n, runes%n
	size := per
	if extra > 0 {
		size++
	}
	count := 0
	for _, r := range text {
		b.WriteRune(r)
		if count++; count == size {
			out = append(out, b.String())
			b.Reset()
			count = 0
			if len(out) == extra {
				size = per
			}
		}
	}
	return out
}

func defaultInboxJSON(it InboxItem, timeFormat string) any {
	return map[string]any{"id": it.ID, "role": "assistant", "content": it.Content,
		"type": it.Type, "created_at": it.CreatedAt.UTC().Format(timeFormat)}
}
