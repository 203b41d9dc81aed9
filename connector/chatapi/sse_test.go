package chatapi

import (
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

func readAllEvents(t *testing.T, r io.Reader) ([]sseEvent, *sseReader, error) {
	t.Helper()
	p := newSSEReader(r)
	var out []sseEvent
	for {
		ev, err := p.Next()
		if err != nil {
			return out, p, err
		}
		out = append(out, ev)
	}
}

func TestSSEParse(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name, in string
		want     []sseEvent
		end      error
	}{
		{"data lines", "data: a\n\ndata: b\n\n", []sseEvent{{"message", "a", ""}, {"message", "b", ""}}, io.EOF},
		{"multi-line data", "data: one\ndata:two\ndata:  three\n\n", []sseEvent{{"message", "one\ntwo\n three", ""}}, io.EOF},
		{"CRLF and CR", "data: a\r\ndata: b\r\r\ndata: c\r\r", []sseEvent{{"message", "a\nb", ""}, {"message", "c", ""}}, io.EOF},
		{"comments", ": keep-alive\ndata: x\n: more\n\n", []sseEvent{{"message", "x", ""}}, io.EOF},
		{"event type and id", "event: tick\nid: 7\ndata: x\n\ndata: y\n\n", []sseEvent{{"tick", "x", "7"}, {"message", "y", "7"}}, io.EOF},
		{"id with NUL ignored", "id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n", []sseEvent{{"message", "a", "1"}, {"message", "b", "1"}}, io.EOF},
		{"empty data not dispatched", "event: x\n\ndata\n\n", []sseEvent{{"message", "", ""}}, io.EOF},
		{"field without colon", "data\ndata\n\n", []sseEvent{{"message", "\n", ""}}, io.EOF},
		{"unknown field", "foo: bar\ndata: x\n\n", []sseEvent{{"message", "x", ""}}, io.EOF},
		{"BOM", "\xEF\xBB\xBFdata: x\n\n", []sseEvent{{"message", "x", ""}}, io.EOF},
		{"cut inside an event", "data: a\n\ndata: b\n", []sseEvent{{"message", "a", ""}}, io.ErrUnexpectedEOF},
		{"cut inside a line", "data: a\n\ndata: b", []sseEvent{{"message", "a", ""}}, io.ErrUnexpectedEOF},
		{"JSON chunks", "data: {\"type\":\"text\",\"content\":\"Hi\"}\n\ndata: [DONE]\n\n",
			[]sseEvent{{"message", `{"type":"text","content":"Hi"}`, ""}, {"message", "[DONE]", ""}}, io.EOF},
	} {
		t.Run(c.name, func(t *testing.T) {
			// One byte at a time too: a CR at a read boundary must not
			// lose or double a line.
			for _, r := range []io.Reader{strings.NewReader(c.in), iotest.OneByteReader(strings.NewReader(c.in))} {
				got, _, err := readAllEvents(t, r)
				if !errors.Is(err, c.end) {
					t.Errorf("end: %v, want %v", err, c.end)
				}
				if len(got) != len(c.want) {
					t.Fatalf("got %q, want %q", got, c.want)
				}
				for i := range got {
					if got[i] != c.want[i] {
						t.Errorf("event %d: %q, want %q", i, got[i], c.want[i])
					}
				}
			}
		})
	}
}

func TestSSERetry(t *testing.T) {
	t.Parallel()
	_, p, _ := readAllEvents(t, strings.NewReader("retry: 1500\nretry: x1\nretry:\ndata: a\n\n"))
	if p.Retry() != 1500*time.Millisecond {
		t.Errorf("retry %s, want 1.5s (invalid values ignored)", p.Retry())
	}
}

func TestSSELimits(t *testing.T) {
	t.Parallel()
	_, _, err := readAllEvents(t, strings.NewReader("data: "+strings.Repeat("x", maxSSELine+1)+"\n\n"))
	if !errors.Is(err, errSSELine) {
		t.Errorf("long line: %v", err)
	}
	_, _, err = readAllEvents(t, strings.NewReader(strings.Repeat("data: "+strings.Repeat("x", 1000)+"\n", maxSSEEvent/1000+1)))
	if !errors.Is(err, errSSEEvent) {
		t.Errorf("big event: %v", err)
	}
}

// FuzzSSE checks the parser against a line-based reading of the same
// input: the same events, whatever the chunking, and no panic.
func FuzzSSE(f *testing.F) {
	for _, s := range []string{"data: a\n\n", "data: a\r\ndata: b\r\n\r\n", "event: x\nid: 1\ndata\n\n", ": c\n\n", "\xEF\xBB\xBFdata: x\r\r", "retry: 10\ndata: x\n", "data: x\r"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		whole, _, err1 := readAllEvents(t, strings.NewReader(string(in)))
		bytewise, _, err2 := readAllEvents(t, iotest.OneByteReader(strings.NewReader(string(in))))
		if len(whole) != len(bytewise) || (err1 == nil) != (err2 == nil) {
			t.Fatalf("chunking changed the result: %q (%v) vs %q (%v)", whole, err1, bytewise, err2)
		}
		want := reference(string(in))
		if len(whole) != len(want) {
			t.Fatalf("got %q, reference %q", whole, want)
		}
		for i := range whole {
			if whole[i] != bytewise[i] || whole[i] != want[i] {
				t.Fatalf("event %d: %q / %q, reference %q", i, whole[i], bytewise[i], want[i])
			}
		}
	})
}

// reference is a second, deliberately plain reading of the WHATWG rules
// over the whole input at once.
func reference(in string) []sseEvent {
	in = strings.TrimPrefix(in, "\uFEFF")
	in = strings.ReplaceAll(in, "\r\n", "\n")
	in = strings.ReplaceAll(in, "\r", "\n")
	lines := strings.Split(in, "\n")
	lines = lines[:len(lines)-1] // the part after the last line end is no line
	var out []sseEvent
	var data []string
	typ, id := "", ""
	for _, l := range lines {
		if len(l) > maxSSELine {
			return out
		}
		if l == "" {
			if data != nil {
				t := typ
				if t == "" {
					t = "message"
				}
				out = append(out, sseEvent{t, strings.Join(data, "\n"), id})
			}
			data, typ = nil, ""
			continue
		}
		if l[0] == ':' {
			continue
		}
		field, value, found := strings.Cut(l, ":")
		if found {
			value = strings.TrimPrefix(value, " ")
		}
		switch field {
		case "event":
			typ = value
		case "data":
			data = append(data, value)
		case "id":
			if !strings.Contains(value, "\x00") {
				id = value
			}
		}
	}
	return out
}
