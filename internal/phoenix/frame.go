package phoenix

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// Reserved event names of the Phoenix Channels protocol.
const (
	EventJoin      = "phx_join"
	EventLeave     = "phx_leave"
	EventReply     = "phx_reply"
	EventClose     = "phx_close"
	EventError     = "phx_error"
	EventHeartbeat = "heartbeat"
	// TopicPhoenix is the socket-level topic heartbeats travel on.
	TopicPhoenix = "phoenix"
)

// ErrMalformedFrame is wrapped by every DecodeFrame and EncodeFrame error.
// The reader skips such frames (counting them in Stats.DroppedFrames) and
// keeps the connection.
var ErrMalformedFrame = errors.New("phoenix: malformed frame")

// Frame is one Phoenix Channels v2 message: the JSON array
// [join_ref, ref, topic, event, payload]. JoinRef and Ref are nil when the
// wire carries null.
type Frame struct {
	JoinRef *string
	Ref     *string
	Topic   string
	Event   string
	// Payload is always a JSON object on the wire. EncodeFrame writes {}
	// for an empty Payload.
	Payload json.RawMessage
}

// DecodeFrame parses one text frame of the v2 JSON serializer. It rejects
// anything but a five-element array whose refs are strings or null, whose
// topic and event are non-empty strings and whose payload is an object.
// Errors name the offending element, never its contents, so they are safe
// to log.
func DecodeFrame(data []byte) (Frame, error) {
	if f, ok := decodeFast(data); ok {
		return f, nil
	}
	var parts []json.RawMessage
	if err := json.Unmarshal(data, &parts); err != nil {
		return Frame{}, fmt.Errorf("%w: not a JSON array: %s", ErrMalformedFrame, jsonErrKind(err))
	}
	if len(parts) != 5 {
		return Frame{}, fmt.Errorf("%w: array has %d elements, want 5", ErrMalformedFrame, len(parts))
	}
	var f Frame
	var err error
	if f.JoinRef, err = decodeRef(parts[0]); err != nil {
		return Frame{}, fmt.Errorf("%w: join_ref %v", ErrMalformedFrame, err)
	}
	if f.Ref, err = decodeRef(parts[1]); err != nil {
		return Frame{}, fmt.Errorf("%w: ref %v", ErrMalformedFrame, err)
	}
	if f.Topic, err = decodeName(parts[2]); err != nil {
		return Frame{}, fmt.Errorf("%w: topic %v", ErrMalformedFrame, err)
	}
	if f.Event, err = decodeName(parts[3]); err != nil {
		return Frame{}, fmt.Errorf("%w: event %v", ErrMalformedFrame, err)
	}
	if kind := jsonKind(parts[4]); kind != "object" {
		return Frame{}, fmt.Errorf("%w: payload is %s, want object", ErrMalformedFrame, kind)
	}
	f.Payload = parts[4]
	return f, nil
}

// EncodeFrame renders f as a v2 JSON array. The payload must be a JSON
// object; an empty payload is sent as {}.
func EncodeFrame(f Frame) ([]byte, error) {
	payload := f.Payload
	if len(bytes.TrimSpace(payload)) == 0 {
		payload = json.RawMessage("{}")
	}
	if kind := jsonKind(payload); kind != "object" {
		return nil, fmt.Errorf("%w: payload is %s, want object", ErrMalformedFrame, kind)
	}
	if f.Topic == "" || f.Event == "" {
		return nil, fmt.Errorf("%w: empty topic or event", ErrMalformedFrame)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // keep payload bytes as given
	if err := enc.Encode([5]any{f.JoinRef, f.Ref, f.Topic, f.Event, payload}); err != nil {
		return nil, fmt.Errorf("%w: payload: %s", ErrMalformedFrame, jsonErrKind(err))
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// encodePayload marshals v for use as a frame payload: nil becomes {}, and
// anything that does not marshal to a JSON object is an error.
func encodePayload(v any) (json.RawMessage, error) {
	if v == nil {
		return json.RawMessage("{}"), nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode payload: %w", err)
	}
	if kind := jsonKind(b); kind != "object" {
		if kind == "null" {
			return json.RawMessage("{}"), nil
		}
		return nil, fmt.Errorf("%w: payload is %s, want object", ErrMalformedFrame, kind)
	}
	return b, nil
}

func decodeRef(raw json.RawMessage) (*string, error) {
	switch jsonKind(raw) {
	case "null":
		return nil, nil
	case "string":
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, errors.New("is an invalid string")
		}
		return &s, nil
	default:
		return nil, fmt.Errorf("is %s, want string or null", jsonKind(raw))
	}
}

func decodeName(raw json.RawMessage) (string, error) {
	if kind := jsonKind(raw); kind != "string" {
		return "", fmt.Errorf("is %s, want string", kind)
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", errors.New("is an invalid string")
	}
	if s == "" {
		return "", errors.New("is empty")
	}
	return s, nil
}

// jsonKind names the JSON type of an already-validated value by its first
// byte.
func jsonKind(raw []byte) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "empty"
	}
	switch raw[0] {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	default:
		return "number"
	}
}

// jsonErrKind describes a json error without quoting input bytes.
func jsonErrKind(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("syntax error at offset %d", syn.Offset)
	case errors.As(err, &typ):
		return "JSON " + typ.Value
	default:
		return "invalid JSON"
	}
}
