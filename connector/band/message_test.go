package band

import (
	"encoding/json"
	"testing"
)

// messageEvent marks an event's payload as valid JSON only when it decoded
// the whole payload: the bridge skips its own check for such events, so a
// payload that is not JSON must never carry the mark.
func TestMessageEventMarksOnlyDecodedPayloadsValid(t *testing.T) {
	c, _ := newRecordedConnector(t)
	s := newSession(c)
	for _, tc := range []struct {
		name, payload string
		valid         bool
	}{
		{"decoded", `{"id":"m1","sender_id":"u1","inserted_at":"2026-01-02T03:04:05.123456Z","content":"hi"}`, true},
		{"no id", `{"content":"hi"}`, false},
		{"truncated", `{"id":"m1","content":"hi"`, false},
		{"trailing garbage", `{"id":"m1"} x`, false},
	} {
		ev, ok := s.messageEvent("r1", json.RawMessage(tc.payload), false)
		if !ok {
			t.Fatalf("%s: event dropped", tc.name)
		}
		if ev.ValidJSON != tc.valid {
			t.Errorf("%s: ValidJSON = %v, want %v", tc.name, ev.ValidJSON, tc.valid)
		}
		if ev.ValidJSON && !json.Valid(ev.Data) {
			t.Errorf("%s: marked valid but is not JSON", tc.name)
		}
	}
}

// The seen set keeps its last max ids and forgets the first added first.
func TestSeenSetForgetsTheOldestFirst(t *testing.T) {
	s := newSeenSet(3)
	for _, id := range []string{"a", "b", "c", "b", "d", "e"} {
		s.add(id)
	}
	for id, want := range map[string]bool{"a": false, "b": false, "c": true, "d": true, "e": true} {
		if s.has(id) != want {
			t.Errorf("has(%q) = %v, want %v", id, !want, want)
		}
	}
	if len(s.ids) != 3 {
		t.Errorf("%d ids kept, want 3", len(s.ids))
	}
}
