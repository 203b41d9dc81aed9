package phoenix

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/bridgeworks/bridge/internal/redact"
)

// Sentinel errors; test with errors.Is. Join, Leave and Push wrap what
// they return once as "phoenix: <op> <topic>: ...", so the errors only they
// return carry no prefix of their own.
var (
	// ErrSendQueueFull means the bounded outbound queue (Options.SendQueue)
	// had no room; the frame was not sent. It never blocks.
	ErrSendQueueFull = errors.New("send queue full")
	// ErrNotConnected means the connection was lost (or was never open)
	// before the frame was written or its reply arrived.
	ErrNotConnected = errors.New("not connected")
	// ErrTimeout means no phx_reply arrived within Options.JoinTimeout.
	ErrTimeout = errors.New("reply timeout")
	// ErrNotJoined is returned by Push on a channel that is not joined.
	ErrNotJoined = errors.New("channel not joined")
	// ErrAlreadyJoined is returned by Join when this channel, or another
	// channel for the same topic, is already registered on the socket.
	ErrAlreadyJoined = errors.New("topic already joined")
	// ErrLeft is returned by a Join that a concurrent Leave cancelled.
	ErrLeft = errors.New("channel left")
	// ErrChannelErrored is returned by a Join whose channel received
	// phx_error or phx_close before the join reply.
	ErrChannelErrored = errors.New("channel errored")
	// ErrStopped is returned by calls that wait for a socket that Stop
	// ended, and is OnClose's cause when Stop(nil) closed the connection.
	ErrStopped = errors.New("phoenix: socket stopped")
	// ErrHeartbeatTimeout is the cause of a connection closed because a
	// heartbeat went unanswered for a whole interval.
	ErrHeartbeatTimeout = errors.New("phoenix: heartbeat timeout")
	// ErrDropped is the cause of a connection closed by Socket.Drop.
	ErrDropped = errors.New("phoenix: connection dropped")
	// ErrRunning is returned by a second concurrent Run.
	ErrRunning = errors.New("phoenix: socket already running")
	// ErrBinaryFrame marks a binary websocket message; the v2 binary
	// serializer is not supported, so such frames are skipped.
	ErrBinaryFrame = errors.New("phoenix: binary frame not supported")
)

// ReplyError is a phx_reply whose status is not "ok".
type ReplyError struct {
	Status   string
	Response json.RawMessage
}

func (e *ReplyError) Error() string {
	var r struct {
		Reason any `json:"reason"`
	}
	_ = json.Unmarshal(e.Response, &r)
	if s, ok := r.Reason.(string); ok && s != "" {
		return fmt.Sprintf("reply %s: %s", e.Status, clip(s, 120))
	}
	return fmt.Sprintf("reply %s", e.Status)
}

// Reason returns response.reason when it is a string (Phoenix puts its
// error reasons there, e.g. "unmatched topic"), else "".
func (e *ReplyError) Reason() string {
	var r struct {
		Reason string `json:"reason"`
	}
	_ = json.Unmarshal(e.Response, &r)
	return r.Reason
}

// CloseError is the websocket close frame the server sent.
type CloseError struct {
	Code   int
	Reason string
}

func (e *CloseError) Error() string {
	if e.Reason == "" {
		return fmt.Sprintf("phoenix: closed by server: code %d", e.Code)
	}
	return fmt.Sprintf("phoenix: closed by server: code %d: %s", e.Code, clip(e.Reason, 123))
}

// UpgradeError is an HTTP upgrade the server refused. Code, Message and
// RetryAfter come from a body shaped {"error":{"code","message",
// "retry_after"}} (a flat object or an empty body is tolerated), and
// RetryAfter is the larger of the body's retry_after and the Retry-After
// header.
type UpgradeError struct {
	Status     int
	Code       string
	Message    string
	RetryAfter time.Duration
}

func (e *UpgradeError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "phoenix: upgrade refused: HTTP %d", e.Status)
	if e.Code != "" {
		b.WriteString(" " + e.Code)
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %s)", e.RetryAfter)
	}
	return b.String()
}

// newUpgradeError builds an UpgradeError from a refused handshake. body is
// at most the first KiB of the response (coder/websocket keeps that much).
func newUpgradeError(status int, h http.Header, body []byte, now time.Time) *UpgradeError {
	e := &UpgradeError{Status: status}
	e.RetryAfter = parseRetryAfterHeader(h.Get("Retry-After"), now)

	var top map[string]json.RawMessage
	if json.Unmarshal(body, &top) != nil {
		if s := strings.TrimSpace(string(body)); s != "" && jsonKind(body) != "object" {
			e.Message = clip(printable(s), 200)
		}
		return e
	}
	fields := top
	if inner, ok := top["error"]; ok {
		var m map[string]json.RawMessage
		if json.Unmarshal(inner, &m) == nil {
			fields = m
		} else {
			var s string
			if json.Unmarshal(inner, &s) == nil {
				e.Message = clip(printable(s), 200)
			}
		}
	}
	var s string
	if json.Unmarshal(fields["code"], &s) == nil {
		e.Code = clip(printable(s), 80)
	}
	if json.Unmarshal(fields["message"], &s) == nil {
		e.Message = clip(printable(s), 200)
	}
	if d := parseRetryAfterJSON(fields["retry_after"]); d > e.RetryAfter {
		e.RetryAfter = d
	}
	return e
}

// parseRetryAfterJSON reads seconds given as a JSON number or a quoted
// number; fractions are kept.
func parseRetryAfterJSON(raw json.RawMessage) time.Duration {
	if len(raw) == 0 {
		return 0
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		s = string(raw)
	}
	return secondsToDuration(s)
}

// parseRetryAfterHeader reads delta-seconds or an HTTP date.
func parseRetryAfterHeader(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if d := secondsToDuration(v); d > 0 {
		return d
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

func secondsToDuration(s string) time.Duration {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || f <= 0 || f != f {
		return 0
	}
	// Saturate rather than overflow; Backoff.RetryAfterMax caps the wait.
	if f >= float64(math.MaxInt64)/float64(time.Second) {
		return math.MaxInt64
	}
	return time.Duration(f * float64(time.Second))
}

// RedactURL returns raw with every query value and any password replaced
// by REDACTED, so it can be logged: Phoenix sockets usually carry
// credentials (api_key, token) in the query.
func RedactURL(raw string) string { return redact.URL(raw) }

// dialError rewrites a dial failure so it names the redacted URL and not
// the raw one (net/http's *url.Error embeds the full query).
func dialError(rawURL string, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Errorf("phoenix: dial %s: %w", RedactURL(rawURL), err)
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utfStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func utfStart(b byte) bool { return b&0xC0 != 0x80 }

func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return ' '
	}, s)
}
