package subjects

import (
	"fmt"
	"strings"
)

// Kind is the second part of every bridge subject.
type Kind string

// The subject kinds of the contract.
const (
	KindEvent   Kind = "evt"  // P.evt.<platform>.<conn>.<room>.<event>
	KindSys     Kind = "sys"  // P.sys.<platform>.<conn>.<event>
	KindCommand Kind = "cmd"  // P.cmd.<platform>.<conn>.<room>.<command>
	KindResult  Kind = "res"  // P.res.<platform>.<conn>.<room>.<command>
	KindRPC     Kind = "rpc"  // P.rpc.<platform>.<conn>.<command>
	KindWork    Kind = "work" // P.work.<platform>.<conn>.<room>.<event>
	KindDLQ     Kind = "dlq"  // P.dlq.<platform>.<conn>.<room>.<command or event>
)

// HasRoom reports whether subjects of this kind carry a room token.
func (k Kind) HasRoom() bool { return k != KindSys && k != KindRPC }

func (k Kind) valid() bool {
	switch k {
	case KindEvent, KindSys, KindCommand, KindResult, KindRPC, KindWork, KindDLQ:
		return true
	}
	return false
}

// DefaultPrefix is the subject prefix when the config sets none.
const DefaultPrefix = "bridge"

// Subject is one parsed bridge subject. Room holds the platform's id as the
// platform wrote it ("" for no room); String escapes it.
type Subject struct {
	Prefix   string
	Kind     Kind
	Platform string
	Conn     string
	Room     string
	Name     string // event or command name, already in token form
}

// String builds the subject. It does not validate: use [Subject.Validate]
// for input from outside.
func (s Subject) String() string {
	var b strings.Builder
	b.Grow(len(s.Prefix) + len(s.Platform) + len(s.Conn) + len(s.Room) + len(s.Name) + 16)
	b.WriteString(s.Prefix)
	b.WriteByte('.')
	b.WriteString(string(s.Kind))
	b.WriteByte('.')
	b.WriteString(s.Platform)
	b.WriteByte('.')
	b.WriteString(s.Conn)
	if s.Kind.HasRoom() {
		b.WriteByte('.')
		b.WriteString(EscapeToken(s.Room))
	}
	b.WriteByte('.')
	b.WriteString(s.Name)
	return b.String()
}

// Validate checks every part against the grammar and names the bad one.
func (s Subject) Validate() error {
	if err := ValidatePrefix(s.Prefix); err != nil {
		return err
	}
	if !s.Kind.valid() {
		return fmt.Errorf("subject kind %q is not one of evt, sys, cmd, res, rpc, work, dlq", s.Kind)
	}
	if !IsPlatformName(s.Platform) {
		return fmt.Errorf("platform %q is not a lower-case name", s.Platform)
	}
	if !IsConnName(s.Conn) {
		return fmt.Errorf("connection %q does not match [a-z0-9_-]{1,64}", s.Conn)
	}
	if !isToken(s.Name) {
		return fmt.Errorf("name %q is not a subject token", s.Name)
	}
	return nil
}

// Parse splits a subject built under prefix into its parts, unescaping the
// room. It is the inverse of [Subject.String] for valid subjects.
func Parse(prefix, subject string) (Subject, error) {
	rest, ok := strings.CutPrefix(subject, prefix+".")
	if !ok || prefix == "" {
		return Subject{}, fmt.Errorf("subject %q does not start with prefix %q", subject, prefix)
	}
	parts := strings.Split(rest, ".")
	if len(parts) < 4 {
		return Subject{}, fmt.Errorf("subject %q has too few tokens", subject)
	}
	s := Subject{Prefix: prefix, Kind: Kind(parts[0]), Platform: parts[1], Conn: parts[2]}
	want := 4
	if s.Kind.HasRoom() {
		want = 5
	}
	if !s.Kind.valid() {
		return Subject{}, fmt.Errorf("subject %q: kind %q is not one of evt, sys, cmd, res, rpc, work, dlq", subject, parts[0])
	}
	if len(parts) != want {
		return Subject{}, fmt.Errorf("subject %q: kind %s takes %d tokens after the prefix, got %d", subject, s.Kind, want, len(parts))
	}
	if s.Kind.HasRoom() {
		room, err := UnescapeToken(parts[3])
		if err != nil {
			return Subject{}, fmt.Errorf("subject %q: room: %w", subject, err)
		}
		s.Room = room
	}
	s.Name = parts[want-1]
	if err := s.Validate(); err != nil {
		return Subject{}, fmt.Errorf("subject %q: %w", subject, err)
	}
	return s, nil
}

// Filter returns the wildcard subject for all subjects of kind under
// prefix, narrowed to platform and conn when they are not empty.
func Filter(prefix string, kind Kind, platform, conn string) string {
	switch {
	case platform == "":
		return prefix + "." + string(kind) + ".>"
	case conn == "":
		return prefix + "." + string(kind) + "." + platform + ".>"
	}
	return prefix + "." + string(kind) + "." + platform + "." + conn + ".>"
}

// LeaseAlive is the subject a running bridge process answers on while it
// lives: P.lease.alive.<instance>, instance being the process's id in its
// lease values. It is internal to the bridge (no stream stores it, no worker
// needs it): a replica finding a lease held by an earlier process of its own
// owner asks there, and "no responders" proves that process gone.
func LeaseAlive(prefix, instance string) string { return prefix + ".lease.alive." + instance }

// IsConnName reports whether name is a valid connection name: [a-z0-9_-]{1,64}.
func IsConnName(name string) bool {
	if len(name) == 0 || len(name) > 64 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// IsPlatformName reports whether name is a lower-case platform name.
func IsPlatformName(name string) bool {
	if name == "" || len(name) > 32 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// ValidatePrefix checks a subject prefix: one or more dot-separated tokens of
// [A-Za-z0-9_-].
func ValidatePrefix(prefix string) error {
	if prefix == "" {
		return fmt.Errorf("prefix is empty")
	}
	for _, tok := range strings.Split(prefix, ".") {
		if tok == "" {
			return fmt.Errorf("prefix %q has an empty token", prefix)
		}
		for i := 0; i < len(tok); i++ {
			if !safeByte(tok[i]) {
				return fmt.Errorf("prefix %q: byte %q is not in [A-Za-z0-9_-]", prefix, tok[i])
			}
		}
	}
	return nil
}

func isToken(tok string) bool {
	if tok == "" {
		return false
	}
	for i := 0; i < len(tok); i++ {
		if !safeByte(tok[i]) && tok[i] != '~' {
			return false
		}
	}
	return true
}

// Stream names of the contract.
const (
	StreamEvents   = "EVENTS"
	StreamCommands = "COMMANDS"
	StreamDLQ      = "DLQ"
)

// StreamName is the JetStream stream name for base (StreamEvents, …) under
// prefix: BRIDGE_EVENTS for the default prefix, otherwise the prefix upper-cased
// with "-" and "." written as "_" (prefix "acme" → ACME_EVENTS).
func StreamName(prefix, base string) string {
	b := make([]byte, 0, len(prefix)+1+len(base))
	for i := 0; i < len(prefix); i++ {
		switch c := prefix[i]; {
		case c == '-' || c == '.':
			b = append(b, '_')
		case c >= 'a' && c <= 'z':
			b = append(b, c-'a'+'A')
		case c < 0x80:
			b = append(b, c)
		default: // not ASCII: what strings.ToUpper does with it
			return strings.Map(func(r rune) rune {
				if r == '-' || r == '.' {
					return '_'
				}
				return r
			}, strings.ToUpper(prefix)) + "_" + base
		}
	}
	return string(append(append(b, '_'), base...))
}
