package phoenix

import (
	"encoding/json"
	"reflect"
	"testing"
)

// slowDecode is DecodeFrame's general path.
func slowDecode(data []byte) (Frame, error) {
	var parts []json.RawMessage
	if err := json.Unmarshal(data, &parts); err != nil || len(parts) != 5 {
		return Frame{}, ErrMalformedFrame
	}
	var f Frame
	var err error
	if f.JoinRef, err = decodeRef(parts[0]); err != nil {
		return Frame{}, err
	}
	if f.Ref, err = decodeRef(parts[1]); err != nil {
		return Frame{}, err
	}
	if f.Topic, err = decodeName(parts[2]); err != nil {
		return Frame{}, err
	}
	if f.Event, err = decodeName(parts[3]); err != nil {
		return Frame{}, err
	}
	if jsonKind(parts[4]) != "object" {
		return Frame{}, ErrMalformedFrame
	}
	f.Payload = parts[4]
	return f, nil
}

// FuzzDecodeFast: whatever the fast path accepts, the general path accepts
// with the same result.
func FuzzDecodeFast(f *testing.F) {
	for _, s := range []string{
		`["3",null,"chat_room:R","message_created",{"id":"9b0c","content":"hi"}]`,
		`[null,"10","phoenix","phx_reply",{"status":"ok","response":{}}]`,
		` [ "1" , "1" , "t" , "e" , { } ] `,
		`["a\"b",null,"t","e",{}]`,
		`[null,null,"t","e",[]]`,
		`[null,null,"t","e",{"a":1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fast, ok := decodeFast(data)
		if !ok {
			return
		}
		slow, err := slowDecode(data)
		if err != nil {
			t.Fatalf("fast path accepted %q, general path refused it: %v", data, err)
		}
		if !reflect.DeepEqual(fast, slow) {
			t.Fatalf("%q: fast %+v, general %+v", data, fast, slow)
		}
	})
}

func BenchmarkDecodeFrame(b *testing.B) {
	frame := []byte(`["3",null,"chat_room:6f1d2c3a-0b1e-4c8e-9a51-3d7e0b9f1a2c","message_created",{"id":"9b0c6a1e-2b4d-4c8e-9a51-3d7e0b9f1a2c","content":"@Bridge Bot summarise this thread please","sender_id":"5e1f0a1e-2b4d-4c8e-9a51-3d7e0b9f1a2c","sender_type":"User","sender_name":"Dana Levi","message_type":"text","metadata":{"mentions":[{"id":"6f0c1e7a-2b4d-4c8e-9a51-3d7e0b9f1a2c","name":"Bridge Bot","handle":"dana/bridge-bot"}]},"inserted_at":"2026-08-20T10:15:02.123456Z","updated_at":"2026-08-20T10:15:02.123456Z"}]`)
	b.Run("general", func(b *testing.B) {
		for b.Loop() {
			_, _ = slowDecode(frame)
		}
	})
	b.Run("DecodeFrame", func(b *testing.B) {
		for b.Loop() {
			_, _ = DecodeFrame(frame)
		}
	})
}
