package ackflow_test

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/bridgeworks/bridge/ackflow"
	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/retry"
)

// The retry policy as a table: what happens after attempt n fails with err.
func ExampleDecide() {
	p := ackflow.Policy{MaxAttempts: 4, Retry: retry.Policy{Initial: 100 * time.Millisecond, Max: 10 * time.Second, Jitter: retry.NoJitter}}
	network := errors.New("connection reset")
	rows := []struct {
		what    string
		err     error
		attempt int
	}{
		{"success", nil, 1},
		{"network error, 1st attempt", network, 1},
		{"network error, 3rd attempt", network, 3},
		{"network error, last attempt", network, 4},
		{"503", &connector.PlatformError{Status: 503}, 2},
		{"429 Retry-After 5s", &connector.PlatformError{Status: 429, RetryAfter: 5 * time.Second}, 1},
		{"429 Retry-After 1e9 s", &connector.PlatformError{Status: 429, RetryAfter: connector.Seconds(1e9)}, 1},
		{"422 mentions_required", &connector.PlatformError{Status: 422, Code: "mentions_required"}, 1},
		{"408", &connector.PlatformError{Status: 408}, 1},
		{"bad argument", connector.BadRequest("mentions[0].id", "missing"), 1},
		{"marked permanent", connector.Permanent(errors.New("superseded")), 1},
		{"back off 3s", connector.BackOff(network, 3*time.Second), 1},
		{"hold the room 20s", connector.HoldRoom(network, 20*time.Second), 1},
		{"sent, answer lost", connector.Sent(network), 1},
	}
	for _, r := range rows {
		d := ackflow.Decide(r.err, r.attempt, p)
		line := fmt.Sprintf("%-28s %-6s %-6v %s", r.what, d.Action, d.Delay, d.Reason)
		if d.Hold > 0 {
			line += fmt.Sprintf(" (room waits %s)", d.Hold)
		}
		fmt.Println(strings.TrimSpace(line))
	}
	// Output:
	// success                      ack    0s
	// network error, 1st attempt   retry  100ms  transient error
	// network error, 3rd attempt   retry  400ms  transient error
	// network error, last attempt  term   0s     retries exhausted
	// 503                          retry  200ms  transient error
	// 429 Retry-After 5s           retry  5s     transient error
	// 429 Retry-After 1e9 s        retry  10s    transient error
	// 422 mentions_required        term   0s     permanent error
	// 408                          retry  100ms  transient error
	// bad argument                 term   0s     bad request
	// marked permanent             term   0s     permanent error
	// back off 3s                  retry  3s     transient error
	// hold the room 20s            term   0s     room held (room waits 20s)
	// sent, answer lost            term   0s     unknown outcome
}
