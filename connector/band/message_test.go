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
