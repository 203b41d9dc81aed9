package connector

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// ErrNotConnected is returned by a connector whose session ended; the bridge
// reconnects.
var ErrNotConnected = errors.New("not connected")

// ErrSuperseded says another session took over the platform identity.
var ErrSuperseded = errors.New("superseded by another session")

type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// Permanent marks err as not worth retrying.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

// IsPermanent reports whether err, or an error it wraps, is permanent: marked
// with [Permanent], a [BadRequest], or a [PlatformError] that is not retryable.
func IsPermanent(err error) bool {
	var p permanentError
	if errors.As(err, &p) {
		return true
	}
	var b *RequestError
	if errors.As(err, &b) {
		return true
	}
	var pe *PlatformError
	if errors.As(err, &pe) {
		return !pe.Retryable()
	}
	return false
}

// RequestError is bad input from a worker: the command cannot succeed as sent.
type RequestError struct {
	Field   string // the argument at fault, e.g. "mentions[0].id"; may be empty
	Message string
}

func (e *RequestError) Error() string {
	if e.Field == "" {
		return e.Message
	}
	return e.Field + ": " + e.Message
}

// BadRequest returns a [RequestError] naming field.
func BadRequest(field, format string, args ...any) error {
	return &RequestError{Field: field, Message: fmt.Sprintf(format, args...)}
}

// PlatformError is a platform's refusal of a call.
type PlatformError struct {
	Status     int           // HTTP status
	Code       string        // the platform's error code, if any
	Message    string        // the platform's message, if any
	RetryAfter time.Duration // from Retry-After or the body, if any
	Data       []byte        // the raw response body (never logged)
}

func (e *PlatformError) Error() string {
	s := fmt.Sprintf("platform answered %d", e.Status)
	if e.Code != "" {
		s += " " + e.Code
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// Retryable reports whether the call may succeed later: 408, 425, 429 and 5xx.
func (e *PlatformError) Retryable() bool { return RetryableStatus(e.Status) }

// RetryableStatus reports whether an HTTP status is transient.
func RetryableStatus(status int) bool {
	return status == http.StatusRequestTimeout || status == http.StatusTooEarly ||
		status == http.StatusTooManyRequests || status >= 500
}

// RetryAfter returns the wait a platform asked for, or 0.
func RetryAfter(err error) time.Duration {
	var w *waitError
	if errors.As(err, &w) {
		return w.wait
	}
	var pe *PlatformError
	if errors.As(err, &pe) {
		return pe.RetryAfter
	}
	return 0
}

// ParseRetryAfter reads a Retry-After header: seconds or an HTTP date. It
// returns what the platform asked for, however long; callers cap it with
// [CapWait].
func ParseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseFloat(v, 64); err == nil && s >= 0 {
		return Seconds(s)
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
