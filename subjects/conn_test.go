package subjects

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestConnFilters(t *testing.T) {
	t.Parallel()
	c := Conn{Prefix: "bridge", Platform: "band", Name: "c1"}
	if got := c.Filter(KindCommand); got != "bridge.cmd.band.c1.>" {
		t.Errorf("Filter = %s", got)
	}
	// A configured name takes the contract's form: what the bridge publishes.
	for raw, want := range map[string]string{
		"message_created": "bridge.evt.band.c1.*.message_created",
		"Message_Created": "bridge.evt.band.c1.*.message_created",
		"agent.control":   "bridge.evt.band.c1.*.agent~2Econtrol",
	} {
		if got := c.EventFilter(raw); got != want {
			t.Errorf("EventFilter(%q) = %s, want %s", raw, got, want)
		}
	}
	if got, ok := c.Rekind("bridge.cmd.band.c1.r.a.b", KindCommand, KindResult); !ok || got != "bridge.res.band.c1.r.a.b" {
		t.Errorf("Rekind = %s %v", got, ok)
	}
	for _, s := range []string{"bridge.cmd.band.c2.r.x", "bridge.cmd.band.c1.", "bridge.evt.band.c1.r.x"} {
		if got, ok := c.Rekind(s, KindCommand, KindResult); ok {
			t.Errorf("Rekind(%s) = %s, want not ok", s, got)
		}
	}
	if got := c.RoomToken(KindCommand, "bridge.cmd.band.c1.a~2Eb.send"); got != "a~2Eb" {
		t.Errorf("RoomToken = %q", got)
	}
	if got := c.RoomToken(KindRPC, "bridge.rpc.band.c1.x"); got != "" {
		t.Errorf("RoomToken of rpc = %q", got)
	}
}

func TestConnParseLoose(t *testing.T) {
	t.Parallel()
	c := Conn{Prefix: "bridge", Platform: "band", Name: "c1"}
	for _, tc := range []struct {
		kind       Kind
		subject    string
		room, name string
		part       string // "" for valid
	}{
		{KindCommand, "bridge.cmd.band.c1.r~2E1.send_message", "r.1", "send_message", ""},
		{KindCommand, "bridge.cmd.band.c1._.whoami", "", "whoami", ""},
		{KindCommand, "bridge.cmd.band.c1.x~zz.send_message", "x~zz", "send_message", "room"},
		{KindCommand, "bridge.cmd.band.c1.r.a.b", "r", "a.b", "name"},
		{KindCommand, "bridge.cmd.band.c1.r", "r", "", "name"},
		{KindCommand, "bridge.cmd.band.c1.x~zz.a.b", "x~zz", "a.b", "name"},
		{KindRPC, "bridge.rpc.band.c1.list_rooms", "", "list_rooms", ""},
		{KindRPC, "bridge.rpc.band.c1.a.b", "", "a.b", "name"},
		{KindCommand, "bridge.cmd.band.c2.r.x", "", "", "connection"},
		{KindRPC, "bridge.cmd.band.c1.r.x", "", "", "connection"},
	} {
		s, err := c.ParseLoose(tc.kind, tc.subject)
		var pe *PartError
		switch {
		case tc.part == "" && err != nil:
			t.Errorf("%s: %v", tc.subject, err)
			continue
		case tc.part != "" && (!errors.As(err, &pe) || pe.Part != tc.part):
			t.Errorf("%s: error %v, want part %s", tc.subject, err, tc.part)
			continue
		}
		if s.Room != tc.room || s.Name != tc.name {
			t.Errorf("%s: room %q name %q, want %q %q", tc.subject, s.Room, s.Name, tc.room, tc.name)
		}
		if tc.part == "" {
			if s.String() != tc.subject {
				t.Errorf("%s: rebuilt as %s", tc.subject, s.String())
			}
			if p, err := Parse("bridge", tc.subject); err != nil || p != s {
				t.Errorf("%s: Parse gives %+v %v, ParseLoose %+v", tc.subject, p, err, s)
			}
		}
	}
}

// The events a streaming command emits carry its id and their index, 0
// included, and decode back to them.
func TestEventCommandAttributes(t *testing.T) {
	t.Parallel()
	e := NewEvent("band", "c1", "r", "text_delta", "k", time.Unix(1, 0), json.RawMessage(`{"t":"a"}`))
	for _, seq := range []int64{0, 7} {
		e.CommandID, e.Seq = "cmd-1", &seq
		b := e.AppendJSON(nil)
		want, _ := json.Marshal(e)
		var g, w any
		_ = json.Unmarshal(b, &g)
		_ = json.Unmarshal(want, &w)
		if !reflect.DeepEqual(g, w) {
			t.Fatalf("AppendJSON %s, json.Marshal %s", b, want)
		}
		got, err := DecodeEvent(b)
		if err != nil || got.CommandID != "cmd-1" || got.Seq == nil || *got.Seq != seq {
			t.Fatalf("decoded %+v %v from %s", got, err, b)
		}
	}
	e.CommandID, e.Seq = "", nil
	if b := e.AppendJSON(nil); json.Valid(b) && (contains(b, "commandid") || contains(b, `"seq"`)) {
		t.Fatalf("a plain event carries command attributes: %s", b)
	}
}

func contains(b []byte, s string) bool { return strings.Contains(string(b), s) }
