package subjects

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestEscapeToken(t *testing.T) {
	t.Parallel()
	cases := []struct{ id, tok string }{
		{"", "_"},
		{"_", "~5F"},
		{"abc-DEF_09", "abc-DEF_09"},
		{"a.b", "a~2Eb"},
		{"~", "~7E"},
		{"a b*>", "a~20b~2A~3E"},
		{"é", "~C3~A9"},
		{"\x00", "~00"},
		{"__", "__"},
	}
	for _, c := range cases {
		if got := EscapeToken(c.id); got != c.tok {
			t.Errorf("EscapeToken(%q) = %q, want %q", c.id, got, c.tok)
		}
		back, err := UnescapeToken(c.tok)
		if err != nil || back != c.id {
			t.Errorf("UnescapeToken(%q) = %q, %v; want %q", c.tok, back, err, c.id)
		}
	}
}

func TestUnescapeTokenRejects(t *testing.T) {
	t.Parallel()
	for _, tok := range []string{"", "~", "~2", "~2e", "~41", "a.b", "a b", "~GG", "x~5F"} {
		if _, err := UnescapeToken(tok); !errors.Is(err, ErrBadToken) {
			t.Errorf("UnescapeToken(%q) err = %v, want ErrBadToken", tok, err)
		}
	}
}

func TestSubjectBuildParse(t *testing.T) {
	t.Parallel()
	cases := []struct {
		s    Subject
		want string
	}{
		{Subject{"bridge", KindEvent, "band", "support-bot", "6f1d", "message_created"}, "bridge.evt.band.support-bot.6f1d.message_created"},
		{Subject{"bridge", KindSys, "band", "support-bot", "", "connected"}, "bridge.sys.band.support-bot.connected"},
		{Subject{"bridge", KindCommand, "band", "c1", "", "create_chat"}, "bridge.cmd.band.c1._.create_chat"},
		{Subject{"acme.prod", KindResult, "polyai", "c1", "a.b", "send_message"}, "acme.prod.res.polyai.c1.a~2Eb.send_message"},
		{Subject{"bridge", KindRPC, "band", "c1", "", "me"}, "bridge.rpc.band.c1.me"},
		{Subject{"bridge", KindWork, "band", "c1", "r", "message_created"}, "bridge.work.band.c1.r.message_created"},
		{Subject{"bridge", KindDLQ, "band", "c1", "r", "send_message"}, "bridge.dlq.band.c1.r.send_message"},
	}
	for _, c := range cases {
		got := c.s.String()
		if got != c.want {
			t.Errorf("String() = %q, want %q", got, c.want)
		}
		p, err := Parse(c.s.Prefix, got)
		if err != nil {
			t.Fatalf("Parse(%q): %v", got, err)
		}
		if p != c.s {
			t.Errorf("Parse(%q) = %+v, want %+v", got, p, c.s)
		}
	}
}

func TestParseRejects(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"other.evt.band.c.r.e":                                "prefix",
		"bridge.evt.band.c.r":                                 "tokens",
		"bridge.xyz.band.c.r.e":                               "kind",
		"bridge.evt.Band.c.r.e":                               "platform",
		"bridge.evt.band.C.r.e":                               "connection",
		"bridge.evt.band.c.r~2.e":                             "room",
		"bridge.sys.band.c.r.e":                               "tokens",
		"bridge.evt.band.c.r.e.extra":                         "tokens",
		"bridge.evt.band." + strings.Repeat("c", 65) + ".r.e": "connection",
	}
	for subj, want := range cases {
		_, err := Parse("bridge", subj)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) err = %v, want mention of %q", subj, err, want)
		}
	}
}

func TestStreamName(t *testing.T) {
	t.Parallel()
	if got := StreamName("bridge", StreamEvents); got != "BRIDGE_EVENTS" {
		t.Errorf("got %q", got)
	}
	if got := StreamName("acme-prod.x", StreamDLQ); got != "ACME_PROD_X_DLQ" {
		t.Errorf("got %q", got)
	}
	// The ASCII fast path and the general one agree with upper-casing
	// and replacing.
	for _, p := range []string{"", "a_B-c.9~", "grüße-x", "ǆ.y"} {
		want := strings.NewReplacer("-", "_", ".", "_").Replace(strings.ToUpper(p)) + "_EVENTS"
		if got := StreamName(p, StreamEvents); got != want {
			t.Errorf("StreamName(%q) = %q, want %q", p, got, want)
		}
	}
}

func TestEventName(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"message_created": "message_created", "agent.control": "agent~2Econtrol", "Room_Added": "room_added", "": "unknown"} {
		if got := EventName(in); got != want {
			t.Errorf("EventName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestNewEventAndDecode(t *testing.T) {
	t.Parallel()
	ts := time.Date(2026, 8, 20, 10, 15, 2, 123456000, time.UTC)
	e := NewEvent("band", "support-bot", "6f1d", "message_created", "9b0c", ts, []byte(`{"id":"9b0c","x":1}`))
	if e.ID != "band:support-bot:9b0c" || e.Type != "band.message_created" || e.Source != "bridge/band/support-bot" {
		t.Fatalf("envelope = %+v", e)
	}
	b, err := jsonMarshal(e)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeEvent(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != e.ID || !got.Time.Equal(ts) || string(got.Data) != `{"id":"9b0c","x":1}` {
		t.Fatalf("round trip = %+v", got)
	}
	if _, err := DecodeEvent([]byte(`{"specversion":"1.0","id":"","source":"s","type":"t"}`)); err == nil || !strings.Contains(err.Error(), "id") {
		t.Fatalf("want id error, got %v", err)
	}
}

func TestDecodeWorkReply(t *testing.T) {
	t.Parallel()
	ok := []string{
		`{"status":"processing"}`,
		`{"status":"processed","commands":[{"command":"send_message","args":{"content":"hi"}}]}`,
		`{"status":"failed","error":"model timeout","retry":true}`,
	}
	for _, s := range ok {
		if _, err := DecodeWorkReply([]byte(s)); err != nil {
			t.Errorf("%s: %v", s, err)
		}
	}
	bad := map[string]string{
		`nope`:              "JSON",
		`{}`:                "status",
		`{"status":"done"}`: "status",
		`{"status":"failed","commands":[{"command":"x"}]}`:               "commands",
		`{"status":"processed","commands":[{"args":{}}]}`:                "commands[0].command",
		`{"status":"processed","commands":[{"command":"x","args":[1]}]}`: "commands[0].args",
	}
	for s, want := range bad {
		if _, err := DecodeWorkReply([]byte(s)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want mention of %q", s, err, want)
		}
	}
}
