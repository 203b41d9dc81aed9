package subjects

import (
	"encoding/json"
	"testing"
)

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

// FuzzRoundTrip proves parse(build(x)) == x for arbitrary id bytes, and that
// a parsed subject builds back to the same string.
func FuzzRoundTrip(f *testing.F) {
	for _, s := range []string{"", "_", "~", "a.b", "6f1d-9b0c", "~5F", "é", "\x00\xff", "a b>*"} {
		f.Add(s, "message_created")
	}
	f.Fuzz(func(t *testing.T, room, name string) {
		tok := EscapeToken(room)
		back, err := UnescapeToken(tok)
		if err != nil || back != room {
			t.Fatalf("room %q: token %q unescaped to %q, %v", room, tok, back, err)
		}
		s := Subject{Prefix: "bridge", Kind: KindEvent, Platform: "band", Conn: "c1", Room: room, Name: EventName(name)}
		p, err := Parse("bridge", s.String())
		if err != nil {
			t.Fatalf("Parse(%q): %v", s.String(), err)
		}
		if p != s {
			t.Fatalf("Parse(build(%+v)) = %+v", s, p)
		}
	})
}

// FuzzParse feeds arbitrary subjects to Parse: it must not panic, and what it
// accepts must build back to the same subject.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"bridge.evt.band.c.r.e", "bridge.sys.band.c.e", "bridge.cmd.band.c._.x", "bridge.evt.band.c.~5F.e", "bridge.evt.band.c.a~2Eb.e"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, subj string) {
		p, err := Parse("bridge", subj)
		if err != nil {
			return
		}
		if got := p.String(); got != subj {
			t.Fatalf("Parse(%q) built back as %q", subj, got)
		}
	})
}

// FuzzDecodeWorkReply: arbitrary worker replies never panic the decoder.
func FuzzDecodeWorkReply(f *testing.F) {
	f.Add([]byte(`{"status":"processed","commands":[{"command":"send_message","args":{"content":"x"}}]}`))
	f.Add([]byte(`{"status":"failed","retry":true}`))
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = DecodeWorkReply(b) })
}

// FuzzDecodeEvent: arbitrary envelopes never panic the decoder.
func FuzzDecodeEvent(f *testing.F) {
	f.Add([]byte(`{"specversion":"1.0","id":"a","source":"s","type":"t","time":"2026-08-20T10:15:02Z","data":{}}`))
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = DecodeEvent(b) })
}
