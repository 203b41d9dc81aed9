package connector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Optional abilities a connector may implement, found by type assertion.
// The bridge uses each one when it is there and never names a platform.

// ProcessingState is a step of a platform's record of whether an agent
// handled a message.
type ProcessingState int

// The processing states managed dispatch reports.
const (
	Processing ProcessingState = iota + 1 // a worker took the message
	Processed                             // the worker finished it
	Failed                                // the attempt failed (reason given)
)

func (s ProcessingState) String() string {
	switch s {
	case Processing:
		return "processing"
	case Processed:
		return "processed"
	case Failed:
		return "failed"
	}
	return fmt.Sprintf("processing_state(%d)", int(s))
}

// ProcessingTracker is implemented by platforms that keep a processing
// state per message (Band's /processing, /processed, /failed). Managed
// dispatch reports the state of each dispatched event that carries a
// reference.
type ProcessingTracker interface {
	// ProcessingRef returns the platform's message id carried by an event
	// named event with payload data, when the platform tracks that event's
	// processing state.
	ProcessingRef(event string, data json.RawMessage) (id string, ok bool)
	// ProcessingCommand is the command that records state for message id in
	// room; reason explains a Failed state.
	ProcessingCommand(state ProcessingState, room, id, reason string) Command
}

// StreamExecutor is implemented by platforms whose commands produce events
// while they run (the text deltas of a streamed reply). The bridge calls
// ExecuteStream instead of Execute: it publishes each emitted event, in
// order, before the command's result; emit fails when an event could not be
// stored, and the command should then stop with that error.
type StreamExecutor interface {
	ExecuteStream(ctx context.Context, cmd Command, emit func(Event) error) (Response, error)
}

// StateStore keeps a connector's small state (tokens, cursors, open
// sessions) across restarts and replicas. Keys are the connector's own: the
// bridge namespaces them per connection. Revisions make updates safe when
// two processes race: Update and Delete with a revision fail with
// [ErrStateConflict] when the key changed since.
type StateStore interface {
	// Get returns the value and revision of key, or ErrStateNotFound.
	Get(ctx context.Context, key string) ([]byte, uint64, error)
	// Create stores key only if it does not exist (ErrStateConflict if it does).
	Create(ctx context.Context, key string, value []byte) (uint64, error)
	// Update stores key if its revision is still rev.
	Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error)
	// Put stores key whatever its revision.
	Put(ctx context.Context, key string, value []byte) (uint64, error)
	// Delete removes key; rev 0 deletes whatever the revision.
	Delete(ctx context.Context, key string, rev uint64) error
	// List returns the keys that start with prefix.
	List(ctx context.Context, prefix string) ([]string, error)
}

// State store errors.
var (
	ErrStateNotFound = errors.New("state: key not found")
	ErrStateConflict = errors.New("state: key changed meanwhile")
)

// Errors beyond HTTP: a platform that is not plain REST says how to go on.

// waitError asks for a wait before the next try (BackOff) or before the
// room's next command (HoldRoom).
type waitError struct {
	err  error
	wait time.Duration
	room bool
}

func (e *waitError) Error() string { return e.err.Error() }
func (e *waitError) Unwrap() error { return e.err }

// BackOff marks err as transient with a wait the platform asked for: the
// next try comes no sooner than d (capped like a Retry-After).
func BackOff(err error, d time.Duration) error {
	if err == nil {
		return nil
	}
	return &waitError{err: err, wait: d}
}

// HoldRoom marks err as transient and asks that the room's next command wait
// d (a cooldown): the command's result says so, and the bridge holds that
// room, not the others.
func HoldRoom(err error, d time.Duration) error {
	if err == nil {
		return nil
	}
	return &waitError{err: err, wait: d, room: true}
}

// RoomHold returns the wait of a [HoldRoom] error.
func RoomHold(err error) (time.Duration, bool) {
	var w *waitError
	if errors.As(err, &w) && w.room {
		return w.wait, true
	}
	return 0, false
}

type sentError struct{ err error }

func (e sentError) Error() string { return e.err.Error() }
func (e sentError) Unwrap() error { return e.err }

// Sent marks err as the failure of a call that may have reached the
// platform and must never be sent again by the bridge (a chat turn the user
// pays for): the command ends with an unknown outcome, not retried.
func Sent(err error) error {
	if err == nil {
		return nil
	}
	return sentError{err}
}

// WasSent reports whether err is a [Sent] error.
func WasSent(err error) bool {
	var s sentError
	return errors.As(err, &s)
}
