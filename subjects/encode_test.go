package subjects

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

// AppendJSON writes the same JSON value json.Marshal writes (json.Marshal
// also HTML-escapes inside Data; the value is the same).
func FuzzAppendJSON(f *testing.F) {
	f.Add("band", "support-bot", "6f1d", "message_created", "9b0c", []byte(`{"id":"9b0c","content":"hi"}`), false)
	f.Add("band", "c", "", "agent~2Econtrol", "k", []byte(``), false)
	f.Add("band", "c", "a.b\"<é>\x01", "x", "k\\", []byte(`{"a":[1,2,{"b":null}]}`), false)
	f.Add("band", "c", "r", "typing", "k", []byte(`{}`), true)
	f.Fuzz(func(t *testing.T, platform, conn, room, name, key string, data []byte, transient bool) {
		if len(data) > 0 && !json.Valid(data) {
			return
		}
		var compact bytes.Buffer
		if len(data) > 0 {
			_ = json.Compact(&compact, data)
		}
		e := NewEvent(platform, conn, room, name, key, time.Date(2026, 8, 20, 10, 15, 2, 123456000, time.UTC), compact.Bytes())
		e.Transient = transient
		want, err := json.Marshal(e)
		if err != nil {
			return // invalid UTF-8 and the like: json.Marshal's own business
		}
		got := e.AppendJSON(nil)
		var g, w any
		if err := json.Unmarshal(got, &g); err != nil {
			t.Fatalf("AppendJSON wrote invalid JSON %s: %v", got, err)
		}
		_ = json.Unmarshal(want, &w)
		if !reflect.DeepEqual(g, w) {
			t.Fatalf("AppendJSON:\n%s\njson.Marshal:\n%s", got, want)
		}
	})
}

func BenchmarkEncodeEvent(b *testing.B) {
	e := NewEvent("band", "support-bot", "6f1d-room", "message_created", "9b0c", time.Now(), []byte(`{"id":"9b0c","content":"@Bridge Bot summarise this thread","sender_id":"5e1f","sender_type":"User","metadata":{"mentions":[{"id":"A","name":"Bridge Bot"}]}}`))
	b.Run("json.Marshal", func(b *testing.B) {
		for b.Loop() {
			_, _ = json.Marshal(e)
		}
	})
	b.Run("AppendJSON", func(b *testing.B) {
		buf := make([]byte, 0, 1024)
		for b.Loop() {
			buf = e.AppendJSON(buf[:0])
		}
	})
}

// An offloaded event has no data and a reference in the dataref
// attributes; it encodes like json.Marshal and decodes back to the same
// reference.
func TestOffloadedEventRoundTrip(t *testing.T) {
	e := NewEvent("band", "support-bot", "6f1d", "message_created", "9b0c", time.Now(), json.RawMessage(`{"content":"big"}`))
	ref := DataRef{Bucket: PayloadBucket("bridge", "support-bot"), Object: "ab12", Size: 1 << 20,
		SHA256: "a3f1c9e2b7d4a3f1c9e2b7d4a3f1c9e2b7d4a3f1c9e2b7d4a3f1c9e2b7d4a3f1"}
	ref.Object = ref.SHA256
	e.Offload(ref)
	got := e.AppendJSON(nil)
	want, _ := json.Marshal(e)
	var g, w any
	_ = json.Unmarshal(got, &g)
	_ = json.Unmarshal(want, &w)
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("AppendJSON:\n%s\njson.Marshal:\n%s", got, want)
	}
	d, err := DecodeEvent(got)
	if err != nil {
		t.Fatal(err)
	}
	if r, ok := d.Ref(); !ok || r != ref || len(d.Data) != 0 {
		t.Fatalf("decoded ref %+v %v data %q, want %+v", r, ok, d.Data, ref)
	}
	if d.DataRef != "nats-object://BRIDGE_PAYLOADS_support-bot/"+ref.SHA256 {
		t.Fatalf("dataref %q", d.DataRef)
	}
	d.DataSHA256 = "x"
	if _, err := DecodeEvent(append(d.AppendJSON(nil)[:0:0], d.AppendJSON(nil)...)); err == nil || !strings.Contains(err.Error(), "sha256") {
		t.Fatalf("bad reference decoded: %v", err)
	}
}

// A transient event carries the extension attribute transient: true, and
// decodes back with it; other events do not carry the attribute at all.
func TestTransientRoundTrip(t *testing.T) {
	t.Parallel()
	e := NewEvent("band", "c", "r", "typing", "k", time.Date(2026, 8, 20, 10, 15, 2, 0, time.UTC), []byte(`{}`))
	if b := e.AppendJSON(nil); bytes.Contains(b, []byte("transient")) {
		t.Fatalf("a plain event carries transient: %s", b)
	}
	e.Transient = true
	b := e.AppendJSON(nil)
	if !bytes.Contains(b, []byte(`"transient":true`)) {
		t.Fatalf("transient event: %s", b)
	}
	got, err := DecodeEvent(b)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Transient || !reflect.DeepEqual(got, e) {
		t.Fatalf("decoded %+v, want %+v", got, e)
	}
}
