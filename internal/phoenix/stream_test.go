package phoenix

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"
)

// wsFrame encodes one unmasked (server to client) websocket frame, or a
// masked one (the key is fixed: only the framing matters here).
func wsFrame(opcode byte, fin, masked bool, payload []byte) []byte {
	b0 := opcode
	if fin {
		b0 |= 0x80
	}
	var mask byte
	if masked {
		mask = 0x80
	}
	out := []byte{b0}
	switch n := len(payload); {
	case n < 126:
		out = append(out, mask|byte(n))
	case n <= 0xffff:
		out = append(out, mask|126)
		out = binary.BigEndian.AppendUint16(out, uint16(n))
	default:
		out = append(out, mask|127)
		out = binary.BigEndian.AppendUint64(out, uint64(n))
	}
	if masked {
		out = append(out, 1, 2, 3, 4)
	}
	return append(out, payload...)
}

// chunkedRWC hands out its bytes in reads of the sizes given, in turn.
type chunkedRWC struct {
	r     *bytes.Reader
	sizes []int
	i     int
}

func (c *chunkedRWC) Read(p []byte) (int, error) {
	n := c.sizes[c.i%len(c.sizes)]
	c.i++
	return c.r.Read(p[:min(len(p), n)])
}
func (c *chunkedRWC) Write(p []byte) (int, error) { return len(p), nil }
func (c *chunkedRWC) Close() error                { return nil }

// TestStreamNeverReadsPastAFrame: whatever the connection's read sizes and
// the reader's buffer, no read the stream gives crosses the end of a frame
// (header lengths of 2, 4 and 10 bytes, masked or not, empty payloads),
// and the bytes come through whole and in order.
func TestStreamNeverReadsPastAFrame(t *testing.T) {
	t.Parallel()
	var wire []byte
	var ends []int // offsets where a frame ends
	for i, n := range []int{0, 1, 125, 126, 300, 0xffff, 0x10000, 70000, 3} {
		wire = append(wire, wsFrame(0x1, i%2 == 0, i%3 == 0, bytes.Repeat([]byte{byte(i)}, n))...)
		ends = append(ends, len(wire))
	}
	for _, tc := range []struct {
		name  string
		sizes []int
		bufs  []int
	}{
		{"whole", []int{1 << 20}, []int{4096}},
		{"bytes", []int{1}, []int{4096}},
		{"odd", []int{3, 7, 4096, 1, 13}, []int{1, 5, 4096, 70001}},
	} {
		st := newStream(&chunkedRWC{r: bytes.NewReader(wire), sizes: tc.sizes})
		var got []byte
		for i := 0; ; i++ {
			p := make([]byte, tc.bufs[i%len(tc.bufs)])
			n, err := st.Read(p)
			from, to := len(got), len(got)+n
			for _, e := range ends {
				if from < e && to > e {
					t.Fatalf("%s: read [%d,%d) crosses the frame end at %d", tc.name, from, to, e)
				}
			}
			got = append(got, p[:n]...)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
		}
		if !bytes.Equal(got, wire) {
			t.Fatalf("%s: %d bytes came through, want the %d sent, unchanged", tc.name, len(got), len(wire))
		}
	}
}

// rawServer accepts one websocket upgrade by hand and writes the bytes
// first gives it right behind the 101 response (frames the client's HTTP
// transport has already buffered when the upgrade completes); later bytes
// are written in one write each as the test sends them.
type rawServer struct {
	url   string
	later chan []byte
}

func newRawServer(t *testing.T, first []byte) *rawServer {
	t.Helper()
	rs := &rawServer{later: make(chan []byte, 8)}
	stop := make(chan struct{})
	rs.url = scriptServer(t, first, func(c net.Conn) {
		go func() { _, _ = io.Copy(io.Discard, c) }() // the client's frames; ends when c closes
		for {
			select {
			case b := <-rs.later:
				if _, err := c.Write(b); err != nil {
					return
				}
			case <-stop:
				return
			}
		}
	})
	t.Cleanup(func() { close(stop) }) // runs before scriptServer's clean-up
	return rs
}

// startRun makes a socket and starts it with Start; ended gets what done
// reports (it has room for a second report, which a test may check never
// comes).
func startRun(t *testing.T, ctx context.Context, opts Options) (*Socket, chan error) {
	t.Helper()
	s := NewSocket(opts)
	ended := make(chan error, 2)
	if err := s.Start(ctx, func(err error) { ended <- err }); err != nil {
		t.Fatal(err)
	}
	return s, ended
}

// TestFramesInOneWriteAllArrive: frames that reach the client together
// (with the upgrade's response, then several in one write, then one split
// across writes) are all dispatched at once, though no heartbeat or other
// traffic follows to wake an idle reader: none stays unread in a buffer
// while the reader parks.
func TestFramesInOneWriteAllArrive(t *testing.T) {
	t.Parallel()
	push := func(ref string) []byte {
		return wsFrame(0x1, true, false, []byte(`[null,"`+ref+`","phoenix","phx_reply",{"status":"ok","response":{}}]`))
	}
	rs := newRawServer(t, append(push("a"), push("b")...))
	opts := fastOptions(rs.url)
	opts.HeartbeatInterval = time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	s, ended := startRun(t, ctx, opts)
	defer func() {
		cancel()
		select {
		case <-ended:
		case <-time.After(10 * time.Second):
			t.Errorf("the run did not end after cancel")
		}
	}()
	frames := func(want uint64) {
		t.Helper()
		eventually(t, "frames read", func() bool { return s.Stats().FramesIn >= want })
	}
	frames(2)
	rs.later <- append(append(push("c"), push("d")...), push("e")...)
	frames(5)
	f := push("f")
	rs.later <- f[:3]
	rs.later <- f[3:]
	frames(6)
}

// TestUnansweredCloseEndsAfterCloseTimeout: Stop on an idle connection
// whose peer never answers the close frame ends the run once CloseTimeout
// passed (closing the stream under the parked reader), well before the
// websocket library's own 5 s bound.
func TestUnansweredCloseEndsAfterCloseTimeout(t *testing.T) {
	t.Parallel()
	rs := newRawServer(t, nil)
	opts := fastOptions(rs.url)
	opts.HeartbeatInterval = time.Hour
	opts.CloseTimeout = 100 * time.Millisecond
	s, ended := startRun(t, context.Background(), opts)
	eventually(t, "connected", s.Connected)
	s.Stop(nil)
	select {
	case err := <-ended:
		if err != nil {
			t.Fatalf("run ended with %v, want nil (Stop(nil))", err)
		}
	case <-time.After(4 * time.Second):
		t.Fatalf("the run did not end within 4 s of Stop with a 100 ms CloseTimeout")
	}
}
