package bandemu

import (
	"encoding/json"
	"slices"
	"time"
)

// Processing states of a message for one agent, as returned by
// [Server.Status] and accepted by the REST status filter.
const (
	// StatusPending means no processing attempt was ever started.
	StatusPending = "pending"
	// StatusProcessing means the current attempt is open.
	StatusProcessing = "processing"
	// StatusProcessed means the last attempt closed with success; the
	// message has left /messages/next.
	StatusProcessed = "processed"
	// StatusFailed means the last attempt closed with an error; the
	// message stays in /messages/next for a retry.
	StatusFailed = "failed"
)

// Attempt states, as found in [Attempt.Status].
const (
	AttemptProcessing = "processing"
	AttemptSuccess    = "success"
	AttemptFailed     = "failed"
	// AttemptAbandoned marks an attempt that was still open when
	// /processing was called again (crash recovery).
	AttemptAbandoned = "abandoned"
)

// Message types an agent may post through POST .../events.
var eventTypes = []string{"tool_call", "tool_result", "thought", "error", "task", "attention"}

// User is a human participant created with [Server.AddUser].
type User struct {
	ID         string
	Name       string
	Handle     string
	InsertedAt time.Time
}

// Agent is an agent identity: the default one from [Options] or one
// made by [Server.AddAgent]. APIKey authenticates REST calls and the
// WebSocket upgrade for this agent.
type Agent struct {
	ID          string
	Name        string
	Handle      string
	Description string
	APIKey      string
	InsertedAt  time.Time
}

// Room is a chat room (a "chat" in the REST API).
type Room struct {
	ID         string
	Title      string
	TaskID     string // empty means null
	InsertedAt time.Time
	UpdatedAt  time.Time
	// ParticipantIDs lists users and agents in the order they joined.
	ParticipantIDs []string
}

// Mention is one entry of a text message's metadata.mentions.
type Mention struct {
	ID     string
	Name   string
	Handle string
	// Kind is "mention" (delivers) or "reference" (narrative only).
	Kind string
}

// Message is a stored chat message: text or an agent event.
type Message struct {
	ID          string
	RoomID      string
	Content     string
	SenderID    string
	SenderType  string // "User" or "Agent"
	SenderName  string
	MessageType string // "text", "tool_call", "thought", ...
	Mentions    []Mention
	// Metadata is the event metadata posted with a non-text message,
	// as raw JSON; nil for text messages (see Mentions).
	Metadata   json.RawMessage
	InsertedAt time.Time
}

func (m Message) clone() Message {
	m.Mentions = slices.Clone(m.Mentions)
	m.Metadata = slices.Clone(m.Metadata)
	return m
}

// Attempt is one processing attempt of a message by an agent.
type Attempt struct {
	Number      int
	Status      string // one of the Attempt* constants
	Error       string // set when Status is AttemptFailed
	StartedAt   time.Time
	CompletedAt time.Time // zero while the attempt is open
}

// RequestRecord is one HTTP request the emulator answered: a REST call
// or a WebSocket upgrade (Status 101 when accepted). Query strings are
// not recorded because they may carry keys.
type RequestRecord struct {
	Method   string
	Path     string
	Status   int
	AgentID  string // the authenticated agent, empty when auth failed
	Time     time.Time
	Duration time.Duration
	// TraceParent is the request's W3C traceparent header, if it had one.
	TraceParent string
}

// ContactRequest is a contact request between an agent and a peer.
type ContactRequest struct {
	ID         string
	FromID     string
	ToID       string
	Message    string
	Status     string // pending, approved, rejected, cancelled
	InsertedAt time.Time
}

// Contact is an established contact of an agent.
type Contact struct {
	ID         string // contact record id
	PeerID     string
	InsertedAt time.Time
}
