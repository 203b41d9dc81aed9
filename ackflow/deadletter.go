package ackflow

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bridgeworks/bridge/claimcheck"
	"github.com/bridgeworks/bridge/subjects"
)

// maxReason bounds the Bridge-Error header.
const maxReason = 1024

// DeadLetter publishes a message that was given up on to
// P.dlq.<platform>.<conn>.<room>.<name> (P = prefix; the rest from src, a
// command or event subject) and waits for the PubAck. The dead letter keeps
// the original body and headers, minus the Nats-* control headers (an
// expected-stream or rollup header must not steer the DLQ publish), plus:
//
//   - Bridge-Error: reason (one line, at most 1 KiB)
//   - Bridge-Status: status (the HTTP status, 0 when there was none)
//   - Bridge-Attempts: attempts
//   - Bridge-Source-Subject: src as a subject
//   - Nats-Msg-Id: "<source subject>:<original Nats-Msg-Id>", or a hash of
//     the source subject and body when the original had none, so dead-lettering
//     the same message again within the DLQ's duplicate window stores it once.
//
// A dead letter that would exceed NATS's max_payload (the original near the
// limit plus these headers) keeps every header but carries its body by
// reference: the body goes to cc's bucket and the Bridge-Data-* headers say
// where (see [subjects.DataRef]); its own body is empty. With cc nil such a
// dead letter fails with an error [claimcheck.IsTooLarge] recognises.
func DeadLetter(ctx context.Context, js jetstream.JetStream, cc *claimcheck.Store, prefix string, src subjects.Subject, body []byte, hdr nats.Header, reason string, status, attempts int) (err error) {
	if src.Prefix == "" {
		src.Prefix = prefix
	}
	source := src.String()
	defer wrapErr(&err, "ackflow: dead-letter %s", source)
	if src.Kind != subjects.KindCommand && src.Kind != subjects.KindEvent {
		return fmt.Errorf("source kind %q is not cmd or evt", src.Kind)
	}
	dlq := src
	dlq.Prefix, dlq.Kind = prefix, subjects.KindDLQ
	m := nats.NewMsg(dlq.String())
	m.Data = body
	for k, v := range hdr {
		if strings.HasPrefix(strings.ToLower(k), "nats-") {
			continue
		}
		m.Header[k] = slices.Clone(v)
	}
	m.Header.Set(subjects.HeaderError, oneLine(reason, maxReason))
	m.Header.Set(subjects.HeaderStatus, strconv.Itoa(status))
	m.Header.Set(subjects.HeaderAttempts, strconv.Itoa(attempts))
	m.Header.Set(subjects.HeaderSourceSubject, source)
	m.Header.Set(subjects.HeaderMsgID, DeadLetterID(source, hdr.Get(subjects.HeaderMsgID), body))
	if !claimcheck.Fits(js.Conn(), m) {
		if cc == nil {
			return fmt.Errorf("%d bytes with headers, over max_payload %d: %w", claimcheck.PayloadSize(m), js.Conn().MaxPayload(), nats.ErrMaxPayload)
		}
		ref, err := cc.Put(ctx, body)
		if err != nil {
			return err
		}
		for k, v := range ref.Headers() {
			m.Header.Set(k, v)
		}
		m.Data = nil
	}
	_, err = js.PublishMsg(ctx, m)
	return err
}

// DeadLetterID is the Nats-Msg-Id [DeadLetter] gives the dead letter of the
// message with id msgID ("" when it had none) and body on source.
func DeadLetterID(source, msgID string, body []byte) string {
	if msgID != "" {
		return source + ":" + msgID
	}
	h := sha256.New()
	h.Write([]byte(source))
	h.Write([]byte{0})
	h.Write(body)
	return source + ":sha256-" + hex.EncodeToString(h.Sum(nil)[:16])
}

// oneLine makes s a valid header value: no CR or LF, at most n bytes.
func oneLine(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, s)
	if len(s) > n {
		s = strings.ToValidUTF8(s[:n], "")
	}
	return s
}

// wrapErr prefixes *err once with the operation; used with defer on named
// results.
func wrapErr(err *error, format string, args ...any) {
	if *err != nil {
		*err = fmt.Errorf(format+": %w", append(args, *err)...)
	}
}
