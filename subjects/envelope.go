package subjects

import (
	"encoding/json"
	"fmt"
	"time"
)

// Header names the bridge sets or reads; [Headers] says where each one
// goes.
const (
	HeaderMsgID         = "Nats-Msg-Id"
	HeaderContentType   = "Content-Type"
	HeaderReplyTo       = "Bridge-Reply-To"
	HeaderAttempt       = "Bridge-Attempt" // on work requests: 1 for the first attempt
	HeaderError         = "Bridge-Error"
	HeaderStatus        = "Bridge-Status"
	HeaderAttempts      = "Bridge-Attempts"
	HeaderSourceSubject = "Bridge-Source-Subject"
	HeaderTraceParent   = "traceparent" // W3C trace context, with tracing on
	HeaderTraceState    = "tracestate"
)

// ContentTypeCloudEvents is the Content-Type of every event message.
const ContentTypeCloudEvents = "application/cloudevents+json"

// SpecVersion is the CloudEvents version of [Event].
const SpecVersion = "1.0"

// Event is the CloudEvents 1.0 structured-mode envelope of every message on
// P.evt…, P.sys… and P.work…. Data is the platform payload, unchanged; when
// it was too large for one NATS message it is absent and the Data* fields
// say where it is kept (see [DataRef]; dataref is the CloudEvents extension
// attribute of that name).
type Event struct {
	SpecVersion     string    `json:"specversion"`
	ID              string    `json:"id"`
	Source          string    `json:"source"`
	Type            string    `json:"type"`
	Subject         string    `json:"subject,omitempty"`
	Time            time.Time `json:"time"`
	DataContentType string    `json:"datacontenttype,omitempty"`
	Platform        string    `json:"platform"`
	Connection      string    `json:"connection"`
	Room            string    `json:"room,omitempty"`
	// Transient marks an event that only matters while it is fresh (typing,
	// thinking): the CloudEvents extension attribute transient, present
	// only when true. A worker may drop such events.
	Transient  bool            `json:"transient,omitempty"`
	Data       json.RawMessage `json:"data,omitempty"`
	DataRef    string          `json:"dataref,omitempty"`
	DataBucket string          `json:"databucket,omitempty"`
	DataObject string          `json:"dataobject,omitempty"`
	DataSize   int64           `json:"datasize,omitempty"`
	DataSHA256 string          `json:"datasha256,omitempty"`
	// CommandID and Seq are set on the events a streaming command emits
	// while it runs (extension attributes commandid and seq): the id of the
	// command and the event's index among them, from 0. They come before
	// the command's result.
	CommandID string `json:"commandid,omitempty"`
	Seq       *int64 `json:"seq,omitempty"`
}

// NewEvent fills in the envelope's fixed fields for one platform event.
// key is the platform's own id of the event (or a hash of what identifies it)
// and makes ID stable across sockets, gap-fills, replicas and restarts.
func NewEvent(platform, conn, room, name, key string, t time.Time, data json.RawMessage) Event {
	return Event{
		SpecVersion:     SpecVersion,
		ID:              EventID(platform, conn, key),
		Source:          "bridge/" + platform + "/" + conn,
		Type:            platform + "." + name,
		Subject:         room,
		Time:            t.UTC(),
		DataContentType: "application/json",
		Platform:        platform,
		Connection:      conn,
		Room:            room,
		Data:            data,
	}
}

// EventID is the stable CloudEvents id (and Nats-Msg-Id) of a platform event.
func EventID(platform, conn, key string) string { return platform + ":" + conn + ":" + key }

// DecodeEvent parses and checks an envelope; the error names the bad field.
func DecodeEvent(b []byte) (Event, error) {
	var e Event
	if err := json.Unmarshal(b, &e); err != nil {
		return Event{}, fmt.Errorf("event: not a JSON object: %w", err)
	}
	switch {
	case e.SpecVersion != SpecVersion:
		return Event{}, fmt.Errorf("event: specversion %q is not %q", e.SpecVersion, SpecVersion)
	case e.ID == "":
		return Event{}, fmt.Errorf("event: id is empty")
	case e.Source == "":
		return Event{}, fmt.Errorf("event: source is empty")
	case e.Type == "":
		return Event{}, fmt.Errorf("event: type is empty")
	}
	if r, ok := e.Ref(); ok {
		if err := r.check(); err != nil {
			return Event{}, fmt.Errorf("event: %w", err)
		}
		if len(e.Data) > 0 {
			return Event{}, fmt.Errorf("event: both data and dataref are set")
		}
	}
	return e, nil
}

// Result is the outcome of one executed command, published on P.res… and on
// the command's Bridge-Reply-To subject, and the reply to P.rpc… requests.
type Result struct {
	CommandID string          `json:"command_id"`
	Command   string          `json:"command"`
	OK        bool            `json:"ok"`
	Status    int             `json:"status,omitempty"`
	Data      json.RawMessage `json:"data,omitempty"`
	Error     *Error          `json:"error,omitempty"`
	Attempts  int             `json:"attempts"`
}

// Error says why a command failed. Code is the platform's error code where it
// has one, otherwise one of the ErrCode constants.
type Error struct {
	Code      string `json:"code"`
	Message   string `json:"message"`
	Retryable bool   `json:"retryable"`
	// RetryAfterMs is how long the platform asked the room to rest before
	// its next command (a cooldown), in milliseconds; the bridge holds the
	// room's later commands that long. 0: none asked.
	RetryAfterMs int64 `json:"retry_after_ms,omitempty"`
}

// Error codes the bridge itself produces; [ErrorCodes] describes each.
const (
	ErrCodeBadRequest  = "bad_request" // not JSON, unknown command, bad or missing argument
	ErrCodeUnavailable = "unavailable" // transient failures outlasted the retries, or the bridge is busy or stopping
	ErrCodePlatform    = "platform"    // platform refused without a code of its own
	ErrCodeTooLarge    = "too_large"   // the result is larger than NATS's max_payload: ask for less (page)
	// ErrCodeUnknownOutcome: the call may have reached the platform and
	// failed on the way back; the bridge never sends it again (it could
	// act twice). Check the platform before retrying.
	ErrCodeUnknownOutcome = "unknown_outcome"
)

// Managed-dispatch reply statuses.
const (
	WorkProcessing = "processing"
	WorkProcessed  = "processed"
	WorkFailed     = "failed"
)

// WorkReply is one reply of a worker to a P.work… request. Status
// "processing" restarts the deadline; "processed" runs Commands in order and
// marks the message processed; "failed" with Retry asks for another attempt.
type WorkReply struct {
	Status   string        `json:"status"`
	Commands []CommandSpec `json:"commands,omitempty"`
	Error    string        `json:"error,omitempty"`
	Retry    bool          `json:"retry,omitempty"`
}

// CommandSpec is one command inside a [WorkReply].
type CommandSpec struct {
	Command string          `json:"command"`
	Args    json.RawMessage `json:"args,omitempty"`
}

// DecodeWorkReply parses and checks a dispatch reply; the error names the
// bad field.
func DecodeWorkReply(b []byte) (WorkReply, error) {
	var r WorkReply
	if err := json.Unmarshal(b, &r); err != nil {
		return WorkReply{}, fmt.Errorf("reply: not a JSON object: %w", err)
	}
	switch r.Status {
	case WorkProcessing, WorkProcessed, WorkFailed:
	case "":
		return WorkReply{}, fmt.Errorf("reply: status is missing (want processing, processed or failed)")
	default:
		return WorkReply{}, fmt.Errorf("reply: status %q is not processing, processed or failed", r.Status)
	}
	if r.Status != WorkProcessed && len(r.Commands) > 0 {
		return WorkReply{}, fmt.Errorf("reply: commands are only allowed with status processed")
	}
	for i, c := range r.Commands {
		if c.Command == "" {
			return WorkReply{}, fmt.Errorf("reply: commands[%d].command is missing", i)
		}
		if len(c.Args) > 0 && c.Args[0] != '{' && string(c.Args) != "null" {
			return WorkReply{}, fmt.Errorf("reply: commands[%d].args is not a JSON object", i)
		}
	}
	return r, nil
}
