package claimcheck

import (
	"errors"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// PayloadSize is what the server counts of m against max_payload: its data
// and its encoded headers (the subject and reply subject do not count).
func PayloadSize(m *nats.Msg) int64 {
	n := int64(len(m.Data))
	if len(m.Header) == 0 {
		return n
	}
	n += int64(len("NATS/1.0\r\n\r\n"))
	for k, vs := range m.Header {
		for _, v := range vs {
			n += int64(len(k) + len(v) + 4) // "k: v\r\n"
		}
	}
	return n
}

// Fits reports whether m can be published on nc: within the max_payload
// the server announced.
func Fits(nc *nats.Conn, m *nats.Msg) bool { return PayloadSize(m) <= nc.MaxPayload() }

// IsTooLarge reports whether a publish failed because the message was too
// large: the client's max_payload check, or a stream's maximum message size.
// Retrying such a publish can never succeed.
func IsTooLarge(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, nats.ErrMaxPayload) || errors.Is(err, jetstream.ErrStreamMessageExceedsMaximum) {
		return true
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamMessageExceedsMaximum {
		return true
	}
	return strings.Contains(strings.ToLower(err.Error()), "maximum payload")
}
