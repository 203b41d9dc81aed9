package connector

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/rs/zerolog"

	"github.com/bridgeworks/bridge/retry"
	"github.com/bridgeworks/bridge/subjects"
)

// Event is one inbound platform event, or a lifecycle event when Lifecycle
// is set.
type Event struct {
	// Lifecycle marks a lifecycle event for P.sys… (a socket's state change
	// inside the connector); Name is then ignored and Room, when set, names
	// the room (a session) the event concerns. A typed name rather than a
	// flag: the status board and workers read the same constants, and
	// nothing can publish a lifecycle name that subjects.Lifecycles does
	// not document.
	Lifecycle subjects.Lifecycle
	Room      string          // the platform's room id as written; "" for agent-level events
	Name      string          // the platform's event name (the bridge lower-cases and escapes it)
	Key       string          // stable id of the event: the platform's id, or a hash of what identifies it
	Time      time.Time       // the platform's timestamp; zero means "use the receive time"
	Data      json.RawMessage // the platform payload, unchanged
	// GapFill marks an event found by catch-up after a (re)connect rather than
	// pushed live; it only feeds metrics.
	GapFill bool
	// Transient marks an event that only matters while it is fresh (typing,
	// thinking): its envelope carries transient: true and workers may drop it.
	Transient bool
	// ValidJSON says Data is known to be valid JSON (the connector decoded
	// all of it): the bridge then does not scan it again before storing it.
	// Leave it false when unsure; the bridge checks Data itself.
	ValidJSON bool
}

// AckFunc settles one received event. The bridge calls it exactly once: with
// nil once the event is stored, or with the error that kept it from being
// stored (the connector may then fetch it again on its next catch-up).
type AckFunc func(ctx context.Context, err error)

// Connector bridges one platform account. The bridge calls Connect, then
// Receive in a loop from one goroutine, then Close; after Close it may call
// Connect again to start a new session.
type Connector interface {
	// Connect opens a session; ctx bounds the dial and handshake only.
	Connect(ctx context.Context) error
	// Receive blocks for the next event. A [Permanent] error ends the
	// connection for good (e.g. superseded); any other error makes the bridge
	// Close and reconnect after a backoff.
	Receive(ctx context.Context) (Event, AckFunc, error)
	// Close ends the session and stops its goroutines; it is idempotent.
	Close(ctx context.Context) error
}

// Notifier is implemented by connectors that can hand events over without
// a goroutine of the bridge blocked in Receive: while a connection is idle
// the bridge then holds no goroutine for it besides the connector's own.
// The bridge calls TryReceive until it reports nothing ready, then Notify,
// and lets its goroutine end; ready brings it back.
type Notifier interface {
	// TryReceive is Receive without the wait: ok is false when Receive
	// would block (no event, and the session has not ended). With ok, ev
	// and ack or err are as Receive's.
	TryReceive() (ev Event, ack AckFunc, ok bool, err error)
	// Notify calls ready once when TryReceive has something again (an
	// event or the session's end), at once when it has something already.
	// ready may be called on any of the connector's goroutines, its socket
	// reader included, and returns at once; a later Notify replaces an
	// earlier one that has not been called.
	Notify(ready func())
}

// Command is one worker command for the platform.
type Command struct {
	ID   string          // the command id (Nats-Msg-Id or generated)
	Name string          // e.g. "send_message"
	Room string          // platform room id; "" when the command takes none
	Args json.RawMessage // the JSON arguments as the worker sent them
	// MaybeExecuted is set when an earlier run may have executed this
	// command without recording it (a crash between the platform call and
	// the record): see [Reconciler]. Since bounds when that could have been.
	MaybeExecuted bool
	Since         time.Time
}

// Reconciler is implemented by connectors that can tell whether a command
// already took effect on the platform. The bridge asks before re-executing
// a command that a crashed run may have executed. Reconcile returns the
// platform's records that could be that earlier execution (same command,
// same content, created since cmd.Since), oldest first, each with its Ref.
// A record only says "a command like this one ran", not which one did: the
// bridge takes the first record that no other command has claimed (it
// records the Ref of every command it executes) and executes the command
// when there is none, so two commands never share one record.
type Reconciler interface {
	Reconcile(ctx context.Context, cmd Command) ([]Response, error)
}

// Response is a platform's answer to an executed command.
type Response struct {
	Status int             // HTTP status, or 200 for commands answered by the bridge
	Data   json.RawMessage // the platform's response data
	// Ref is the platform's id of what the command created (a message id),
	// "" when it created nothing a [Reconciler] could find again.
	Ref string
}

// Executor runs worker commands against the platform. Execute makes one
// attempt: retries, ordering and dead-lettering are the bridge's. It returns
// a [BadRequest] error for bad input, a [PlatformError] for a platform
// refusal, and any other error for a transport failure (retried).
type Executor interface {
	Execute(ctx context.Context, cmd Command) (Response, error)
}

// Stats are counters a connector may expose for metrics.
type Stats struct {
	Reconnects       uint64 // socket reconnects inside the connector
	MissedHeartbeats uint64
	GapFilled        uint64 // events found by catch-up
	// Wait is the latest wait the platform imposed (429/503 with a
	// Retry-After, on REST or on the socket upgrade), already capped at
	// Config.RetryAfterMax; zero when there was none. It is over once
	// Wait.Until has passed.
	Wait Wait
}

// StatsReporter is implemented by connectors that count socket-level events.
type StatsReporter interface{ Stats() Stats }

// Config is what a connector gets from the bridge's configuration.
type Config struct {
	Name     string // the connection's name (the <conn> subject token)
	Platform string // the configured platform name (may be an alias)
	// Settings is the connection's [connection.settings] table without its
	// secret keys; the connector decodes it with [Settings.Decode].
	Settings Settings
	// Secrets are the table's <name>_env / <name>_file keys, resolved on
	// demand with [Secrets.Get]; never log a value.
	Secrets Secrets
	// RetryAfterMax caps every wait the platform asks for (Retry-After on
	// REST, retry_after on a refused socket upgrade); zero means
	// [DefaultRetryAfterMax]. A longer ask is cut to it and logged.
	RetryAfterMax time.Duration
	// Reconnect is the connection's reconnect policy (reconnect_initial,
	// reconnect_max). A connector that keeps its session across socket
	// losses redials with it; the bridge uses it between sessions. A zero
	// policy takes retry's defaults.
	Reconnect retry.Policy
}

// Deps are the shared services a connector may use.
type Deps struct {
	Log        zerolog.Logger // already carries the connection's name
	HTTPClient *http.Client   // for REST; nil means the connector's own
	// State keeps the connector's small state across restarts and
	// replicas, namespaced to this connection; nil when the bridge runs
	// without one (tests that build a connector by hand).
	State StateStore
	// Dials, shared by every connection of the process, paces the sockets
	// the connector opens: it waits on it before every dial, redials
	// included. nil: no pacing.
	Dials *DialLimiter
	// CatchUp, shared by every connection of the process, bounds the
	// catch-up reads (lists of unprocessed messages or rooms) running at
	// once. nil: no bound beyond the connector's own.
	CatchUp *Gate
}

// Factory builds a connector for one platform.
type Factory struct {
	// Platform is the subject token the connector publishes under; aliases
	// (thenvoi) map to their platform (band).
	Platform string
	// Secrets names the settings that are secrets (Band: api_key): the
	// config must give them as <name>_env or <name>_file, never in plain.
	Secrets []string
	// Check validates cfg without I/O (settings decoded, required secrets
	// configured); the bridge calls it before starting, so a bad setting
	// fails check-config. nil means New's own checks only.
	Check func(cfg Config) error
	New   func(cfg Config, deps Deps) (Connector, error)
	// CommandSchemas returns the JSON Schema of each command's arguments
	// (as [CommandSchemer] does), without a connection: the documentation
	// generator reads it. nil when the platform describes none.
	CommandSchemas func() map[string]json.RawMessage
}

// Registry maps configured platform names to factories. It is filled
// explicitly by the program (see package platforms), never by init
// functions.
type Registry map[string]Factory
