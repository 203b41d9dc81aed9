package polyaiemu

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"time"
)

// Event types (polyai.md §7, §8).
const (
	TypeRequestJoin    = "EVENT_TYPE_REQUEST_POLY_AGENT_JOIN"
	TypeUserMessage    = "EVENT_TYPE_USER_MESSAGE"
	TypeUserTyping     = "EVENT_TYPE_USER_TYPING"
	TypeUserEndSession = "EVENT_TYPE_USER_END_SESSION"
	TypeHeartbeat      = "EVENT_TYPE_HEARTBEAT"

	TypeAgentJoined           = "EVENT_TYPE_POLY_AGENT_JOINED"
	TypeAgentThinking         = "EVENT_TYPE_POLY_AGENT_THINKING"
	TypeAgentMessage          = "EVENT_TYPE_POLY_AGENT_MESSAGE"
	TypeAgentMessageChunk     = "EVENT_TYPE_POLY_AGENT_MESSAGE_CHUNK"
	TypeAgentLeft             = "EVENT_TYPE_POLY_AGENT_LEFT"
	TypeAgentTriggeredHandoff = "EVENT_TYPE_POLY_AGENT_TRIGGERED_HANDOFF"
	TypeLiveAgentJoined       = "EVENT_TYPE_LIVE_AGENT_JOINED"
	TypeLiveAgentTyping       = "EVENT_TYPE_LIVE_AGENT_TYPING"
	TypeLiveAgentMessage      = "EVENT_TYPE_LIVE_AGENT_MESSAGE"
	TypeLiveAgentLeft         = "EVENT_TYPE_LIVE_AGENT_LEFT"
	TypeHandoffAccepted       = "EVENT_TYPE_HANDOFF_ACCEPTED"
	TypeHandoffQueueStatus    = "EVENT_TYPE_HANDOFF_QUEUE_STATUS"
	TypeClientHandoffRequired = "EVENT_TYPE_CLIENT_HANDOFF_REQUIRED"
	TypeHandoffFailed         = "EVENT_TYPE_HANDOFF_FAILED"
	TypeHandoffTimeout        = "EVENT_TYPE_HANDOFF_TIMEOUT"
	TypeSessionStart          = "EVENT_TYPE_SESSION_START"
	TypeSessionEnd            = "EVENT_TYPE_SESSION_END"
	TypeSystemMessage         = "EVENT_TYPE_SYSTEM_MESSAGE"
	TypeLanguageChanged       = "EVENT_TYPE_LANGUAGE_CHANGED"
	TypeEventBatch            = "EVENT_TYPE_EVENT_BATCH"
)

// Session end reasons (polyai.md §8).
const (
	ReasonUserEnd       = "REASON_USER_END"
	ReasonUserAbandoned = "REASON_USER_ABANDONED"
	ReasonNaturalEnd    = "REASON_NATURAL_END"
)

// System message levels (polyai.md §8).
const (
	LevelInfo    = "SYSTEM_MESSAGE_LEVEL_INFO"
	LevelWarning = "SYSTEM_MESSAGE_LEVEL_WARNING"
	LevelError   = "SYSTEM_MESSAGE_LEVEL_ERROR"
)

// serverOnly are the types a client may not send: a client sending one
// gets "Event type not allowed: <type>" (polyai.md §4.3, §12).
var serverOnly = map[string]bool{
	"EVENT_TYPE_REQUEST_POLY_AGENT_JOIN_WITH_GREETING_MESSAGE": true,
	TypeAgentJoined: true, TypeAgentThinking: true, TypeAgentMessage: true,
	TypeAgentMessageChunk: true, TypeAgentLeft: true, TypeAgentTriggeredHandoff: true,
	TypeLiveAgentJoined: true, TypeLiveAgentTyping: true, TypeLiveAgentMessage: true,
	TypeLiveAgentLeft: true, TypeHandoffAccepted: true, TypeHandoffQueueStatus: true,
	TypeClientHandoffRequired: true, TypeHandoffFailed: true, TypeHandoffTimeout: true,
	TypeSessionStart: true, TypeSessionEnd: true, TypeSystemMessage: true,
	TypeLanguageChanged: true, TypeEventBatch: true,
}

// Event is one server event as a test sees it. Sequence is 0 for a
// transient event (null on the wire).
type Event struct {
	ID        string
	Sequence  int64
	Timestamp time.Time
	Type      string
	Payload   json.RawMessage
	Metadata  json.RawMessage // {"custom":{...}} or nil
}

// event is a server event. Journaled events have seq > 0.
type event struct {
	id      string
	seq     int64
	ts      time.Time
	typ     string
	payload []byte // a JSON object
	meta    []byte // {"custom":...} or nil
}

func (e *event) public() Event {
	return Event{ID: e.id, Sequence: e.seq, Timestamp: e.ts, Type: e.typ,
		Payload: json.RawMessage(e.payload), Metadata: json.RawMessage(e.meta)}
}

// encode writes the envelope of polyai.md §5. payloadKey is "payload"
// on the wire, or the oneof key inside a batch.
func (e *event) encode(b *bytes.Buffer, payloadKey string) {
	b.WriteString(`{"id":`)
	b.WriteString(strconv.Quote(e.id))
	b.WriteString(`,"sequence":`)
	if e.seq > 0 {
		b.WriteString(strconv.FormatInt(e.seq, 10))
	} else {
		b.WriteString("null")
	}
	b.WriteString(`,"timestamp":"`)
	b.WriteString(e.ts.UTC().Format("2006-01-02T15:04:05.000000Z"))
	b.WriteString(`","type":`)
	b.WriteString(strconv.Quote(e.typ))
	b.WriteString(`,"`)
	b.WriteString(payloadKey)
	b.WriteString(`":`)
	b.Write(e.payload)
	if e.meta != nil {
		b.WriteString(`,"metadata":`)
		b.Write(e.meta)
	}
	b.WriteByte('}')
}

// wire is the frame of a live event.
func (e *event) wire() []byte {
	var b bytes.Buffer
	e.encode(&b, "payload")
	return b.Bytes()
}

// oneofKey is the key a batch puts an event's payload under:
// EVENT_TYPE_POLY_AGENT_MESSAGE → poly_agent_message.
func oneofKey(typ string) string {
	return strings.ToLower(strings.TrimPrefix(typ, "EVENT_TYPE_"))
}

// batch encodes one EVENT_BATCH frame holding events (transient: its
// own sequence is null).
func batch(id string, ts time.Time, events []*event, plain bool) []byte {
	var b bytes.Buffer
	b.WriteString(`{"events":[`)
	for i, e := range events {
		if i > 0 {
			b.WriteByte(',')
		}
		key := "payload"
		if !plain {
			key = oneofKey(e.typ)
		}
		e.encode(&b, key)
	}
	b.WriteString(`]}`)
	outer := event{id: id, ts: ts, typ: TypeEventBatch, payload: b.Bytes()}
	return outer.wire()
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		return []byte("{}") // only maps of plain values reach here
	}
	return b
}

type obj = map[string]any

// AgentMessage is what the PolyAI agent says: text with optional
// attachments and response suggestions (polyai.md §8).
type AgentMessage struct {
	Text        string
	Attachments []Attachment
	Suggestions []string // each becomes {"message_text": ...}
}

// Attachment is a card attached to an agent message.
type Attachment struct {
	Title            string `json:"title"`
	PreviewImageURL  string `json:"preview_image_url,omitempty"`
	ContentURL       string `json:"content_url,omitempty"`
	ContentType      string `json:"content_type"` // ATTACHMENT_CONTENT_TYPE_URL or _IMAGE
	CallToActionText string `json:"call_to_action_text,omitempty"`
}

func (m AgentMessage) attachments() []Attachment {
	if m.Attachments == nil {
		return []Attachment{}
	}
	return m.Attachments
}

func (m AgentMessage) suggestions() []obj {
	out := make([]obj, 0, len(m.Suggestions))
	for _, s := range m.Suggestions {
		out = append(out, obj{"message_text": s})
	}
	return out
}

// chunks splits text into pieces of at most size runes; "" gives none.
func chunks(text string, size int) []string {
	var out []string
	r := []rune(text)
	for len(r) > 0 {
		n := min(size, len(r))
		out = append(out, string(r[:n]))
		r = r[n:]
	}
	return out
}
