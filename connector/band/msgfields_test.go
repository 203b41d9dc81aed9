package band

import (
	"encoding/json"
	"testing"
)

// messageFields reads what json.Unmarshal reads, and fails where it fails.
func FuzzMessageFields(f *testing.F) {
	for _, s := range []string{
		`{"id":"m1","sender_id":"u1","inserted_at":"2026-01-02T03:04:05.123456Z","content":"hi"}`,
		`{"content":{"a":[1,"]}",{"b":null}]},"id":"m2"}`,
		` { "ID" : "m3" , "Sender_Id":null, "x":-1.5e3, "y":true } `,
		`{"id":"a\"b\u00e9","id":"last"}`,
		`{"\u0069d":"escaped name","ıd":"dotless","ſender_id":"long s"}`,
		`{"id":7}`, `{"id":"x"`, `[]`, `"id"`, `{}`, `null`, "{\"id\":\"\xff\"}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		var m struct {
			ID         string `json:"id"`
			SenderID   string `json:"sender_id"`
			InsertedAt string `json:"inserted_at"`
		}
		err := json.Unmarshal(p, &m)
		id, sender, at, ok := messageFields(p)
		if ok != (err == nil) {
			t.Fatalf("%q: ok %v, Unmarshal: %v", p, ok, err)
		}
		if ok && (id != m.ID || sender != m.SenderID || at != m.InsertedAt) {
			t.Fatalf("%q: read %q %q %q, Unmarshal %q %q %q", p, id, sender, at, m.ID, m.SenderID, m.InsertedAt)
		}
	})
}
