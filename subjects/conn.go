package subjects

import (
	"fmt"
	"strings"
)

// Conn names one connection's subjects: everything the command executor
// and managed dispatch build or take apart goes through it, so no package
// cuts a subject by hand.
type Conn struct {
	Prefix   string
	Platform string
	Name     string // the connection's name, the <conn> token
}

// base is P.<kind>.<platform>.<conn>.
func (c Conn) base(kind Kind) string {
	return c.Prefix + "." + string(kind) + "." + c.Platform + "." + c.Name + "."
}

// Filter is the wildcard of every subject of kind of the connection:
// P.<kind>.<platform>.<conn>.>.
func (c Conn) Filter(kind Kind) string { return c.base(kind) + ">" }

// EventFilter is the wildcard of the connection's events named event, in
// any room: P.evt.<platform>.<conn>.*.<name>, the name in the contract's
// form ([EventName]), so a configured "Message_Created" matches what the
// bridge publishes.
func (c Conn) EventFilter(event string) string { return c.base(KindEvent) + "*." + EventName(event) }

// Subject is the connection's subject of kind in room (ignored by kinds
// without a room) named name.
func (c Conn) Subject(kind Kind, room, name string) Subject {
	return Subject{Prefix: c.Prefix, Kind: kind, Platform: c.Platform, Conn: c.Name, Room: room, Name: name}
}

// Rekind turns a subject of the connection of kind from into the one of kind
// to with the same tokens after the connection, as written:
// P.cmd.<platform>.<conn>.<rest> → P.res.<platform>.<conn>.<rest>. ok is
// false when subject is not one of the connection's subjects of kind from.
func (c Conn) Rekind(subject string, from, to Kind) (string, bool) {
	tail, ok := strings.CutPrefix(subject, c.base(from))
	if !ok || tail == "" {
		return "", false
	}
	return c.base(to) + tail, true
}

// PartError names the part of a subject that is bad.
type PartError struct {
	Part    string // "connection", "room" or "name"
	Subject string
	Err     error
}

func (e *PartError) Error() string {
	return fmt.Sprintf("subject %q: %s: %v", e.Subject, e.Part, e.Err)
}

func (e *PartError) Unwrap() error { return e.Err }

// ParseLoose takes apart a subject of kind of the connection, such as a
// command a worker published, as far as it can: unlike [Parse] it returns
// the parts even when one is bad, so an answer can still name the command.
// For kinds with a room, the room is the first token after the connection,
// unescaped when it is a valid token and as written otherwise, and Name is
// everything after it (dots included); for the others Name is everything
// after the connection. err is a *[PartError] naming the first bad part:
// "connection" (not this connection's subject of kind; the Subject is then
// empty), "name" (not exactly one token) or "room".
func (c Conn) ParseLoose(kind Kind, subject string) (Subject, error) {
	tail, ok := strings.CutPrefix(subject, c.base(kind))
	if !ok {
		return Subject{}, &PartError{Part: "connection", Subject: subject,
			Err: fmt.Errorf("not under %s", c.Filter(kind))}
	}
	s := c.Subject(kind, "", tail)
	var roomErr error
	if kind.HasRoom() {
		tok, name, _ := strings.Cut(tail, ".")
		s.Room, s.Name = tok, name
		if r, err := UnescapeToken(tok); err == nil {
			s.Room = r
		} else {
			roomErr = err
		}
	}
	if strings.Contains(s.Name, ".") || !isToken(s.Name) {
		return s, &PartError{Part: "name", Subject: subject, Err: fmt.Errorf("want one token for the name, got %q", s.Name)}
	}
	if roomErr != nil {
		return s, &PartError{Part: "room", Subject: subject, Err: roomErr}
	}
	return s, nil
}

// RoomToken is the room token of a subject of the connection as written,
// "" when subject is not one of its subjects of kind or kind has no room:
// a cheap ordering key for subjects a consumer's filter already vouched for.
func (c Conn) RoomToken(kind Kind, subject string) string {
	if !kind.HasRoom() {
		return ""
	}
	tail, ok := strings.CutPrefix(subject, c.base(kind))
	if !ok {
		return ""
	}
	tok, _, _ := strings.Cut(tail, ".")
	return tok
}
