package subjects

import (
	"errors"
	"fmt"
	"strings"
)

// NoRoom is the room token of agent-level events and commands.
const NoRoom = "_"

const hexDigits = "0123456789ABCDEF"

func safeByte(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '_' || b == '-'
}

// EscapeToken maps an id to one NATS subject token: bytes outside
// [A-Za-z0-9_-] become "~" and two upper-case hex digits. The empty id maps to
// [NoRoom], and an id that is literally "_" maps to "~5F" so that it cannot be
// mistaken for NoRoom. [UnescapeToken] inverts it exactly.
func EscapeToken(id string) string {
	switch id {
	case "":
		return NoRoom
	case NoRoom:
		return "~5F"
	}
	n := 0
	for i := 0; i < len(id); i++ {
		if !safeByte(id[i]) {
			n++
		}
	}
	if n == 0 {
		return id
	}
	var b strings.Builder
	b.Grow(len(id) + 2*n)
	for i := 0; i < len(id); i++ {
		c := id[i]
		if safeByte(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('~')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&0x0f])
	}
	return b.String()
}

// ErrBadToken reports a subject token that EscapeToken cannot have produced.
var ErrBadToken = errors.New("bad subject token")

// UnescapeToken inverts [EscapeToken]. It rejects tokens EscapeToken never
// produces (lower-case hex, escaped safe bytes, stray "~"), so every id has
// exactly one token.
func UnescapeToken(tok string) (string, error) {
	switch tok {
	case "":
		return "", fmt.Errorf("%w: empty", ErrBadToken)
	case NoRoom:
		return "", nil
	case "~5F":
		return NoRoom, nil
	}
	if !strings.Contains(tok, "~") {
		for i := 0; i < len(tok); i++ {
			if !safeByte(tok[i]) {
				return "", fmt.Errorf("%w: byte %q at %d", ErrBadToken, tok[i], i)
			}
		}
		return tok, nil
	}
	out := make([]byte, 0, len(tok))
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		if c != '~' {
			if !safeByte(c) {
				return "", fmt.Errorf("%w: byte %q at %d", ErrBadToken, c, i)
			}
			out = append(out, c)
			continue
		}
		if i+2 >= len(tok) {
			return "", fmt.Errorf("%w: truncated escape at %d", ErrBadToken, i)
		}
		hi, lo := unhex(tok[i+1]), unhex(tok[i+2])
		if hi < 0 || lo < 0 {
			return "", fmt.Errorf("%w: escape %q at %d is not two upper-case hex digits", ErrBadToken, tok[i:i+3], i)
		}
		v := byte(hi<<4 | lo)
		if safeByte(v) {
			return "", fmt.Errorf("%w: escape %q at %d encodes a plain byte", ErrBadToken, tok[i:i+3], i)
		}
		out = append(out, v)
		i += 2
	}
	return string(out), nil
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// EventName turns a platform event name into the contract's form: lower case,
// with "." and other unsafe bytes escaped as for rooms ("agent.control" →
// "agent~2Econtrol"). An empty name becomes "unknown".
func EventName(raw string) string {
	if raw == "" {
		return "unknown"
	}
	return EscapeToken(strings.ToLower(raw))
}
