package chatapi

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"
)

// A Server-Sent Events parser following the WHATWG HTML standard's
// "event stream interpretation": lines end with CRLF, LF or CR; a line
// starting with ":" is a comment; "field: value" (one space after the
// colon dropped), a line without a colon is a field with an empty value;
// "data" lines join with LF; "event" sets the type (default "message");
// "id" sets the last event id unless it holds NUL; "retry" sets the
// reconnection time when it is all ASCII digits; other fields are
// ignored; a blank line dispatches the event unless its data is empty;
// an event not ended by a blank line when the stream ends is dropped; a
// leading UTF-8 BOM is skipped.

// Limits of one stream, so a broken or hostile server cannot make the
// parser hold unbounded memory.
const (
	maxSSELine  = 1 << 20
	maxSSEEvent = 4 << 20
)

var (
	errSSELine  = fmt.Errorf("sse: line longer than %d bytes", maxSSELine)
	errSSEEvent = fmt.Errorf("sse: event data longer than %d bytes", maxSSEEvent)
)

// sseEvent is one dispatched event.
type sseEvent struct {
	Type string // "message" unless the stream named one
	Data string
	ID   string // the last event id when it was dispatched
}

// sseReader reads events from one stream.
type sseReader struct {
	r      *bufio.Reader
	line   []byte
	data   bytes.Buffer
	typ    string
	lastID string
	retry  time.Duration // the latest valid retry field; 0 when none
	skipLF bool          // the last line ended with CR: a LF right after it is part of that end
	start  bool          // the BOM check is done
}

func newSSEReader(r io.Reader) *sseReader {
	return &sseReader{r: bufio.NewReaderSize(r, 32<<10)}
}

// Next returns the next event; io.EOF when the stream ended cleanly
// (between events), io.ErrUnexpectedEOF when it ended inside one, or the
// reader's error.
func (p *sseReader) Next() (sseEvent, error) {
	for {
		line, err := p.readLine()
		if err != nil {
			if errors.Is(err, io.EOF) && (p.data.Len() > 0 || p.typ != "" || len(p.line) > 0) {
				err = io.ErrUnexpectedEOF
			}
			return sseEvent{}, err
		}
		if len(line) == 0 {
			if p.data.Len() == 0 {
				p.typ = ""
				continue
			}
			d := p.data.Bytes()
			ev := sseEvent{Type: p.typ, Data: string(d[:len(d)-1]), ID: p.lastID}
			if ev.Type == "" {
				ev.Type = "message"
			}
			p.data.Reset()
			p.typ = ""
			return ev, nil
		}
		if line[0] == ':' {
			continue
		}
		field, value := line, []byte(nil)
		if i := bytes.IndexByte(line, ':'); i >= 0 {
			field, value = line[:i], line[i+1:]
			if len(value) > 0 && value[0] == ' ' {
				value = value[1:]
			}
		}
		switch string(field) {
		case "event":
			p.typ = string(value)
		case "data":
			if p.data.Len()+len(value)+1 > maxSSEEvent {
				return sseEvent{}, errSSEEvent
			}
			p.data.Write(value)
			p.data.WriteByte('\n')
		case "id":
			if bytes.IndexByte(value, 0) < 0 {
				p.lastID = string(value)
			}
		case "retry":
			if allDigits(value) {
				if ms, err := strconv.ParseInt(string(value), 10, 64); err == nil && ms <= int64(time.Duration(1<<62)/time.Millisecond) {
					p.retry = time.Duration(ms) * time.Millisecond
				}
			}
		}
	}
}

// Retry is the reconnection time the stream asked for, 0 when none.
func (p *sseReader) Retry() time.Duration { return p.retry }

func allDigits(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// readLine returns the next line without its end. The slice is valid
// until the next call.
func (p *sseReader) readLine() ([]byte, error) {
	if !p.start {
		p.start = true
		if b, err := p.r.Peek(3); err == nil && b[0] == 0xEF && b[1] == 0xBB && b[2] == 0xBF {
			_, _ = p.r.Discard(3)
		}
	}
	p.line = p.line[:0]
	for {
		c, err := p.r.ReadByte()
		if err != nil {
			return nil, err
		}
		if p.skipLF {
			p.skipLF = false
			if c == '\n' {
				continue
			}
		}
		switch c {
		case '\n':
			return p.line, nil
		case '\r':
			p.skipLF = true
			return p.line, nil
		}
		if len(p.line) >= maxSSELine {
			return nil, errSSELine
		}
		p.line = append(p.line, c)
	}
}
