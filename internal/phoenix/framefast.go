package phoenix

import (
	"encoding/json"
	"unicode/utf8"
)

// decodeFast parses the frames servers actually send, [ref|null, ref|null,
// "topic", "event", {payload}] with plain strings, without reflection: the
// payload is validated, not decoded. It reports false for anything else (an
// escape in a string, odd spacing, a malformed frame), and DecodeFrame then
// takes the general path, which also produces the error.
func decodeFast(data []byte) (Frame, bool) {
	i := skipWS(data, 0)
	if i >= len(data) || data[i] != '[' {
		return Frame{}, false
	}
	var f Frame
	var ok bool
	var s string
	var null bool
	if s, null, i, ok = fastElem(data, i+1, true); !ok {
		return Frame{}, false
	}
	if !null {
		f.JoinRef = &s
	}
	var r string
	if r, null, i, ok = fastElem(data, i, true); !ok {
		return Frame{}, false
	}
	if !null {
		f.Ref = &r
	}
	if f.Topic, _, i, ok = fastElem(data, i, false); !ok || f.Topic == "" {
		return Frame{}, false
	}
	if f.Event, _, i, ok = fastElem(data, i, false); !ok || f.Event == "" {
		return Frame{}, false
	}
	// The payload runs to the closing bracket.
	end := len(data) - 1
	for end > i && isWS(data[end]) {
		end--
	}
	if end <= i || data[end] != ']' {
		return Frame{}, false
	}
	p := data[skipWS(data, i):end]
	for len(p) > 0 && isWS(p[len(p)-1]) {
		p = p[:len(p)-1]
	}
	if len(p) < 2 || p[0] != '{' || !json.Valid(p) {
		return Frame{}, false
	}
	f.Payload = json.RawMessage(p)
	return f, true
}

// fastElem reads one array element at data[i:] (after optional spaces): a
// plain string, or null when nullable, then the comma after it. It returns
// the string, whether it was null, and the index after the comma.
func fastElem(data []byte, i int, nullable bool) (string, bool, int, bool) {
	i = skipWS(data, i)
	if i >= len(data) {
		return "", false, 0, false
	}
	var s string
	null := false
	switch {
	case data[i] == '"':
		j := i + 1
		for j < len(data) && data[j] != '"' {
			if data[j] == '\\' || data[j] < 0x20 {
				return "", false, 0, false
			}
			j++
		}
		if j >= len(data) || !utf8.Valid(data[i+1:j]) {
			return "", false, 0, false
		}
		s = string(data[i+1 : j])
		i = j + 1
	case nullable && len(data)-i >= 4 && string(data[i:i+4]) == "null":
		null = true
		i += 4
	default:
		return "", false, 0, false
	}
	i = skipWS(data, i)
	if i >= len(data) || data[i] != ',' {
		return "", false, 0, false
	}
	return s, null, i + 1, true
}

func isWS(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func skipWS(data []byte, i int) int {
	for i < len(data) && isWS(data[i]) {
		i++
	}
	return i
}
