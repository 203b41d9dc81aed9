package phoenix

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// bandFrames are the exact frames of band.md §13.
var bandFrames = []string{
	`["1","1","agent_control:A","phx_join",{}]`,
	`["3","3","chat_room:R","phx_reply",{"status":"ok","response":{}}]`,
	`["3","3","chat_room:R","phx_reply",{"status":"error","response":{"reason":"unauthorized"}}]`,
	`[null,"9","bogus:1","phx_reply",{"status":"error","response":{"reason":"unmatched topic"}}]`,
	`[null,"10","phoenix","heartbeat",{}]`,
	`[null,"10","phoenix","phx_reply",{"status":"ok","response":{}}]`,
	`["3",null,"chat_room:R","message_created",{"id":"9b0c","content":"@Bridge Bot summarise this thread","sender_id":"5e1f","sender_type":"User","sender_name":"Dana Levi","message_type":"text","metadata":{"mentions":[{"id":"A","name":"Bridge Bot","handle":"dana/bridge-bot"}]},"inserted_at":"2026-08-20T10:15:02.123456Z","updated_at":"2026-08-20T10:15:02.123456Z"}]`,
	`["2",null,"agent_rooms:A","room_added",{"id":"R","title":"Q3 planning","task_id":null,"inserted_at":"…","updated_at":"…"}]`,
	`["1",null,"agent_control:A","supersede",{"reason":"session.already_connected","message":"This connection has been superseded by a newer session for this agent.","retryable":false,"retry_after":15,"target_socket_id":"agent_socket:A","correlation_id":"evict-123"}]`,
	`["3","12","chat_room:R","phx_leave",{}]`,
	`["3","3","chat_room:R","phx_close",{}]`,
	`["3","3","chat_room:R","phx_error",{"reason":"channel_crash"}]`,
}

func TestDecodeFrameBandExamples(t *testing.T) {
	t.Parallel()
	for _, in := range bandFrames {
		f, err := DecodeFrame([]byte(in))
		if err != nil {
			t.Fatalf("DecodeFrame(%s): %v", in, err)
		}
		out, err := EncodeFrame(f)
		if err != nil {
			t.Fatalf("EncodeFrame: %v", err)
		}
		if string(out) != in {
			t.Errorf("round trip changed the frame:\n in  %s\n out %s", in, out)
		}
	}
	f, _ := DecodeFrame([]byte(bandFrames[3]))
	if f.JoinRef != nil || *f.Ref != "9" || f.Topic != "bogus:1" || f.Event != "phx_reply" {
		t.Fatalf("decoded %+v", f)
	}
}

func TestDecodeFrameErrors(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		`not json`:                         "not a JSON array",
		`{"topic":"t","event":"e"}`:        "not a JSON array: JSON object",
		`[1,2]`:                            "2 elements",
		`[null,null,"t","e",{},1]`:         "6 elements",
		`[1,null,"t","e",{}]`:              "join_ref is number",
		`[null,{},"t","e",{}]`:             "ref is object",
		`[null,null,5,"e",{}]`:             "topic is number",
		`[null,null,"","e",{}]`:            "topic is empty",
		`[null,null,"t",null,{}]`:          "event is null",
		`[null,null,"t","e",[]]`:           "payload is array, want object",
		`[null,null,"t","e","SECRET"]`:     "payload is string",
		`[null,null,"t","e",{"a":SECRET}]`: "syntax error",
		``:                                 "not a JSON array",
	}
	for in, want := range tests {
		_, err := DecodeFrame([]byte(in))
		if !errors.Is(err, ErrMalformedFrame) || !strings.Contains(err.Error(), want) {
			t.Errorf("DecodeFrame(%q) = %v, want %q", in, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "SECRET") {
			t.Errorf("error quotes the frame: %v", err)
		}
	}
}

func TestEncodeFrame(t *testing.T) {
	t.Parallel()
	ref := "7"
	b, err := EncodeFrame(Frame{Ref: &ref, Topic: "phoenix", Event: "heartbeat"})
	if err != nil || string(b) != `[null,"7","phoenix","heartbeat",{}]` {
		t.Fatalf("heartbeat = %s, %v", b, err)
	}
	b, err = EncodeFrame(Frame{JoinRef: &ref, Ref: &ref, Topic: "a<b>", Event: "e", Payload: json.RawMessage(` {"x" : "<&>"} `)})
	if err != nil || string(b) != `["7","7","a<b>","e",{"x":"<&>"}]` {
		t.Fatalf("encode = %s, %v", b, err)
	}
	for _, p := range []string{`[]`, `"s"`, `{"a":`, `null`} {
		if _, err := EncodeFrame(Frame{Topic: "t", Event: "e", Payload: json.RawMessage(p)}); !errors.Is(err, ErrMalformedFrame) {
			t.Errorf("payload %s: %v", p, err)
		}
	}
	if _, err := EncodeFrame(Frame{Event: "e"}); !errors.Is(err, ErrMalformedFrame) {
		t.Errorf("empty topic: %v", err)
	}
}

func FuzzDecodeFrame(f *testing.F) {
	for _, s := range bandFrames {
		f.Add([]byte(s))
	}
	f.Add([]byte(`[null,null,"t","e",{"\u2028":"<>"}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		fr, err := DecodeFrame(data)
		if err != nil {
			if !errors.Is(err, ErrMalformedFrame) {
				t.Fatalf("error does not wrap ErrMalformedFrame: %v", err)
			}
			return
		}
		out, err := EncodeFrame(fr)
		if err != nil {
			t.Fatalf("EncodeFrame of a decoded frame: %v", err)
		}
		back, err := DecodeFrame(out)
		if err != nil {
			t.Fatalf("DecodeFrame of EncodeFrame output %q: %v", out, err)
		}
		if !refEqual(fr.JoinRef, back.JoinRef) || !refEqual(fr.Ref, back.Ref) || fr.Topic != back.Topic || fr.Event != back.Event {
			t.Fatalf("round trip changed header: %+v -> %+v", fr, back)
		}
		var want bytes.Buffer
		if err := json.Compact(&want, fr.Payload); err != nil {
			t.Fatalf("decoded payload is not valid JSON: %v", err)
		}
		if !bytes.Equal(want.Bytes(), back.Payload) {
			t.Fatalf("round trip changed payload: %s -> %s", fr.Payload, back.Payload)
		}
	})
}

func refEqual(a, b *string) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return *a == *b
}
