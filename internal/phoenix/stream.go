package phoenix

import (
	"io"
	"net/http"
	"sync"
)

// stream is an open websocket's byte stream (the upgrade response's body)
// as the websocket library reads it. It lets an idle connection wait for
// the peer without a goroutine deep in the library's read: a waiter
// goroutine that does nothing but a one-byte read, whose stack stays at the
// runtime's smallest size, while the reader that decodes and dispatches
// frames runs only once bytes came (see liveConn.readLoop).
//
// To know when the library holds nothing unread, the stream hands it no
// byte past the end of the frame it is in: after a whole message has been
// read, every byte the peer sent after it is still here. The stream keeps
// its own read-ahead (a pooled buffer, given back while the connection
// idles), so the library's many small reads cost no system call each.
//
// The library serialises its own reads (the reader's and the close
// handshake's); the waiter is the only other reader, and a library read
// that comes while it waits takes the waiter's byte instead of reading
// beside it.
//
// Limits: the library answers pings and takes pongs inside a read, so a
// burst that ends with a control frame leaves the reader in the library
// until the next message (at most a heartbeat interval: the heartbeat's
// reply is one). The waiter's stack is the runtime's smallest over plain
// TCP; over TLS the record layer's frames take it to the next size.
type stream struct {
	rwc io.ReadWriteCloser

	mu      sync.Mutex
	buf     *[]byte       // read-ahead; nil while empty and idle
	off     int           // next unread byte of *buf
	end     int           // end of the read-ahead in *buf
	err     error         // the first read error; returned once the read-ahead is used up
	reading bool          // a library read is in rwc.Read
	waiting bool          // the waiter is in its read
	waited  chan struct{} // made by a library read that waits for the waiter, closed by the waiter; nil otherwise
	one     [1]byte       // the waiter's byte, written only by the waiter
	frame   frameCut
}

// readAhead is the size of a stream's read-ahead buffer.
const readAhead = 4096

var readAheadPool = sync.Pool{New: func() any { b := make([]byte, readAhead); return &b }}

func newStream(rwc io.ReadWriteCloser) *stream { return &stream{rwc: rwc} }

// Read gives the library the next bytes of the current frame.
func (st *stream) Read(p []byte) (int, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	for st.waiting {
		if st.waited == nil {
			st.waited = make(chan struct{})
		}
		w := st.waited
		st.mu.Unlock()
		<-w
		st.mu.Lock()
	}
	for st.off == st.end && st.err == nil {
		if st.buf == nil {
			st.buf = readAheadPool.Get().(*[]byte)
		}
		st.reading = true
		st.mu.Unlock()
		n, err := st.rwc.Read(*st.buf)
		st.mu.Lock()
		st.reading = false
		st.off, st.end, st.err = 0, n, err
	}
	if st.off == st.end {
		return 0, st.err
	}
	n := copy(p[:st.frame.limit(len(p))], (*st.buf)[st.off:st.end])
	st.frame.advance((*st.buf)[st.off : st.off+n])
	st.off += n
	return n, nil
}

// Write writes to the connection.
func (st *stream) Write(p []byte) (int, error) { return st.rwc.Write(p) }

// Close closes the connection: a read in progress, the waiter's included,
// returns an error.
func (st *stream) Close() error { return st.rwc.Close() }

// idle reports whether the library has read every byte the stream took
// from the connection and no read is in progress; if so it gives the
// read-ahead back and starts the waiter, which calls wake (on its own
// goroutine) once the peer sent something or the connection failed.
// Otherwise the caller should read on.
func (st *stream) idle(wake func()) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.off < st.end || st.err != nil || st.reading || st.waiting {
		return false
	}
	if st.buf != nil {
		readAheadPool.Put(st.buf)
		st.buf = nil
	}
	st.waiting = true
	go st.wait(wake) // owned: ends when a byte or an error comes; its wake goes on with the reader
	return true
}

// wait reads one byte, the only work done on the waiter's small stack,
// hands it to the library's next read, and calls wake.
func (st *stream) wait(wake func()) {
	n, err := st.rwc.Read(st.one[:])
	st.mu.Lock()
	if n > 0 {
		if st.buf == nil {
			st.buf = readAheadPool.Get().(*[]byte)
		}
		(*st.buf)[0] = st.one[0]
		st.off, st.end = 0, 1
	}
	if err != nil {
		st.err = err
	}
	st.waiting = false
	if st.waited != nil {
		close(st.waited)
		st.waited = nil
	}
	st.mu.Unlock()
	wake()
}

// frameCut follows the websocket framing (RFC 6455 section 5.2) of the
// bytes handed to the library, so that no read crosses the end of a frame.
type frameCut struct {
	hdr  [14]byte // the current frame's header so far
	n    int      // bytes of hdr seen
	size int      // the header's length, once its second byte is known (else 0)
	left uint64   // payload bytes of the current frame not yet handed out
}

// limit returns how many of want bytes may be handed out next.
func (f *frameCut) limit(want int) int {
	var room uint64
	switch {
	case f.left > 0:
		room = f.left
	case f.size == 0:
		room = uint64(2 - f.n)
	default:
		room = uint64(f.size - f.n)
	}
	return int(min(uint64(want), room))
}

// advance accounts for b, which limit allowed.
func (f *frameCut) advance(b []byte) {
	if f.left > 0 {
		f.left -= uint64(len(b))
		return
	}
	f.n += copy(f.hdr[f.n:], b)
	if f.size == 0 && f.n >= 2 {
		f.size = 2
		switch f.hdr[1] & 0x7f {
		case 126:
			f.size += 2
		case 127:
			f.size += 8
		}
		if f.hdr[1]&0x80 != 0 {
			f.size += 4 // masking key
		}
	}
	if f.size == 0 || f.n < f.size {
		return
	}
	switch l := f.hdr[1] & 0x7f; l {
	case 126:
		f.left = uint64(f.hdr[2])<<8 | uint64(f.hdr[3])
	case 127:
		for _, c := range f.hdr[2:10] {
			f.left = f.left<<8 | uint64(c)
		}
	default:
		f.left = uint64(l)
	}
	f.n, f.size = 0, 0
}

// streamTransport wraps the upgrade's round trip so that the websocket
// library reads the connection through a stream, kept in st.
type streamTransport struct {
	base http.RoundTripper
	st   *stream
}

func (t *streamTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		return resp, err
	}
	if rwc, ok := resp.Body.(io.ReadWriteCloser); ok {
		t.st = newStream(rwc)
		resp.Body = t.st
	}
	return resp, nil
}
