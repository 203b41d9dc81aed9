package chatapiemu

import (
	"crypto/rand"
	"encoding/hex"
	"time"

	"github.com/rs/zerolog"
)

// DefaultAgentID is the id of the agent every Server starts with when
// [Options.AgentID] is empty.
const DefaultAgentID = "3b1f6c2e-8d4a-4f7e-a0c9-5e2d7b8f1a64"

// DefaultBasePath is the path every API route lives under; the real
// base URL is https://ai-teammate.net/api.
const DefaultBasePath = "/api"

// ChatModes are the team chat modes the emulator accepts by default: the
// value set typed in the vendor's Python SDK.
var ChatModes = []string{"auto", "round_robin", "parallel", "debate", "brainstorm", "expert"}

// MarkReadMode says which request bodies POST /agents/:id/mark-read
// accepts. The body is not documented anywhere (chatapi.md §6), so the
// emulator accepts every candidate by default and can be made strict.
type MarkReadMode int

const (
	// MarkReadAny accepts {"message_ids": [...]}, {"message_id": "..."}
	// and an empty body or {} (every unread item).
	MarkReadAny MarkReadMode = iota
	// MarkReadIDs accepts only {"message_ids": [...]}.
	MarkReadIDs
	// MarkReadID accepts only {"message_id": "..."}.
	MarkReadID
	// MarkReadAll accepts only an empty body or {}: every unread item.
	MarkReadAll
)

// Options configures a [Server]. The zero value is ready to use; every
// field documents its default.
type Options struct {
	// BasePath prefixes every route. Default: DefaultBasePath ("/api").
	BasePath string
	// AgentID and AgentName describe the agent the Server starts with.
	// Defaults: DefaultAgentID and "My Assistant".
	AgentID, AgentName string
	// AgentKey is that agent's agent-scoped key. Default: "at_agent_"
	// followed by 32 random hex digits.
	AgentKey string
	// APIKey is the global key (every agent and team). Default: "at_"
	// followed by 32 random hex digits, different for every Server.
	APIKey string
	// TextChunkType is the type of the SSE chunks carrying text deltas.
	// Default: "text" (docs and Python SDK); the JavaScript SDK page
	// filters on "token" instead.
	TextChunkType string
	// TimeFormat formats created_at. Default: time.RFC3339 in UTC, as in
	// the documented example ("2026-02-14T10:00:00Z").
	TimeFormat string
	// AutoMode is the mode a team chat in mode "auto" resolves to (the
	// real system picks one from the message). Default: "parallel".
	AutoMode string
	// TeamModes is the accepted set of team chat modes. Default: ChatModes.
	TeamModes []string
	// DropReplyOnCut leaves the assistant turn of a stream cut by
	// [StreamCut] out of the history. Default false: the server finished
	// generating, so history holds the whole reply.
	DropReplyOnCut bool
	// DisableConversations, DisableInbox turn off the unverified routes
	// (chatapi.md §6), which then answer 404 like unknown routes.
	DisableConversations, DisableInbox bool
	// MarkRead selects the accepted mark-read bodies. Default: MarkReadAny.
	MarkRead MarkReadMode
	// InboxListKey is the key of the list in the GET inbox response.
	// Default: "messages", as in the history response.
	InboxListKey string
	// InboxItemJSON renders one inbox item. Default: {"id", "role":
	// "assistant", "content", "created_at", "type"}.
	InboxItemJSON func(InboxItem) any
	// RateLimit is how many requests one key may make per RateWindow
	// (a token bucket refilled evenly). Default 0: unlimited.
	RateLimit int
	// RateWindow is the RateLimit period. Default: one minute.
	RateWindow time.Duration
	// MaxBodyBytes bounds a request body; a bigger one gets 413.
	// Default: 1 MiB.
	MaxBodyBytes int64
	// MaxHistory bounds the turns kept per agent; the oldest go first.
	// Default: 10000.
	MaxHistory int
	// MaxHistoryLimit is the largest ?limit= the history accepts (422
	// above). Default: 100.
	MaxHistoryLimit int
	// MaxInbox bounds the items kept per agent inbox; adding more drops
	// the oldest read ones, then fails. Default: 10000.
	MaxInbox int
	// MaxStreams bounds concurrent SSE streams; more get 503.
	// Default: 1024.
	MaxStreams int
	// MaxRequestLog bounds the records kept for [Server.Requests]; the
	// oldest half is dropped when full. Default: 10000.
	MaxRequestLog int
	// Logger receives listener events only; payloads and keys are never
	// logged. Default: no logging.
	Logger *zerolog.Logger
}

const maxRecordedBody = 64 << 10

func (o Options) withDefaults() Options {
	def := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	def(&o.BasePath, DefaultBasePath)
	if o.BasePath == "/" {
		o.BasePath = ""
	}
	def(&o.AgentID, DefaultAgentID)
	def(&o.AgentName, "My Assistant")
	def(&o.AgentKey, newKey("at_agent_"))
	def(&o.APIKey, newKey("at_"))
	def(&o.TextChunkType, "text")
	def(&o.TimeFormat, time.RFC3339)
	def(&o.AutoMode, "parallel")
	def(&o.InboxListKey, "messages")
	if len(o.TeamModes) == 0 {
		o.TeamModes = ChatModes
	}
	if o.InboxItemJSON == nil {
		f := o.TimeFormat
		o.InboxItemJSON = func(it InboxItem) any { return defaultInboxJSON(it, f) }
	}
	if o.RateWindow <= 0 {
		o.RateWindow = time.Minute
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = 1 << 20
	}
	if o.MaxHistory <= 0 {
		o.MaxHistory = 10000
	}
	if o.MaxHistoryLimit <= 0 {
		o.MaxHistoryLimit = 100
	}
	if o.MaxInbox <= 0 {
		o.MaxInbox = 10000
	}
	if o.MaxStreams <= 0 {
		o.MaxStreams = 1024
	}
	if o.MaxRequestLog <= 0 {
		o.MaxRequestLog = 10000
	}
	if o.Logger == nil {
		nop := zerolog.Nop()
		o.Logger = &nop
	}
	return o
}

func newKey(prefix string) string { return prefix + randHex(16) }

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails on supported platforms
	return hex.EncodeToString(b)
}

// newID returns a random UUID (version 4) string.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}
