package band

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"
)

// messageFields reads the top-level members id, sender_id and inserted_at
// of a chat message as json.Unmarshal into struct{ID, SenderID,
// InsertedAt string} with those tags would (names matched without regard
// to case, the last of a repeated name kept, null leaving a field empty),
// without reflection: ok is false where Unmarshal fails (not a JSON
// object or null, or one of them not a string or null). One validating scan and
// one light one instead of Unmarshal's two full ones: it runs for every
// message pushed.
func messageFields(p []byte) (id, sender, insertedAt string, ok bool) {
	if !json.Valid(p) {
		return "", "", "", false
	}
	// p is valid JSON from here on: the scan below need not check it.
	i := skipSpace(p, 0)
	if p[i] == 'n' { // null: Unmarshal leaves everything as it is
		return "", "", "", true
	}
	if p[i] != '{' {
		return "", "", "", false
	}
	i = skipSpace(p, i+1)
	if p[i] == '}' {
		return "", "", "", true
	}
	for {
		var key []byte
		key, i = stringToken(p, i)
		i = skipSpace(p, i) + 1 // the colon
		i = skipSpace(p, i)
		var field *string
		switch {
		case nameIs(key, "id"):
			field = &id
		case nameIs(key, "sender_id"):
			field = &sender
		case nameIs(key, "inserted_at"):
			field = &insertedAt
		}
		start := i
		i = skipValue(p, i)
		if field != nil {
			switch v := p[start:i]; v[0] {
			case '"':
				s, good := jsonString(v)
				if !good {
					return "", "", "", false
				}
				*field = s
			case 'n': // null leaves the field as it is
			default:
				return "", "", "", false
			}
		}
		i = skipSpace(p, i)
		if p[i] == '}' {
			return id, sender, insertedAt, true
		}
		i = skipSpace(p, i+1) // the comma
	}
}

// nameIs reports whether a member name token (quotes included) names
// field as encoding/json matches names: without regard to case. A name
// with escapes or beyond ASCII (rare) is matched by encoding/json itself.
func nameIs(tok []byte, field string) bool {
	name := tok[1 : len(tok)-1]
	for _, c := range name {
		if c == '\\' || c >= utf8.RuneSelf {
			return slowNameIs(tok, field)
		}
	}
	return len(name) == len(field) && bytes.EqualFold(name, []byte(field))
}

func slowNameIs(tok []byte, field string) bool {
	var m struct {
		ID         *json.RawMessage `json:"id"`
		SenderID   *json.RawMessage `json:"sender_id"`
		InsertedAt *json.RawMessage `json:"inserted_at"`
	}
	obj := append(append([]byte{'{'}, tok...), ":0}"...)
	if json.Unmarshal(obj, &m) != nil {
		return false
	}
	switch field {
	case "id":
		return m.ID != nil
	case "sender_id":
		return m.SenderID != nil
	}
	return m.InsertedAt != nil
}

// jsonString decodes a string token (quotes included).
func jsonString(tok []byte) (string, bool) {
	inner := tok[1 : len(tok)-1]
	if bytes.IndexByte(inner, '\\') < 0 && utf8.Valid(inner) {
		return string(inner), true
	}
	var s string
	if json.Unmarshal(tok, &s) != nil {
		return "", false
	}
	return s, true
}

func skipSpace(p []byte, i int) int {
	for i < len(p) && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r') {
		i++
	}
	return i
}

// stringToken returns the string token at p[i] (quotes included) and the
// index after it.
func stringToken(p []byte, i int) ([]byte, int) {
	j := i + 1
	for p[j] != '"' {
		if p[j] == '\\' {
			j++
		}
		j++
	}
	return p[i : j+1], j + 1
}

// skipValue returns the index after the value at p[i].
func skipValue(p []byte, i int) int {
	switch p[i] {
	case '"':
		_, i = stringToken(p, i)
		return i
	case '{', '[':
		depth := 0
		for {
			switch p[i] {
			case '"':
				_, i = stringToken(p, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
	}
	for i < len(p) && !(p[i] == ',' || p[i] == '}' || p[i] == ']' || p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r') {
		i++
	}
	return i
}
