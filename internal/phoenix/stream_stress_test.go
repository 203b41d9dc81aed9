package phoenix

import (
	"bufio"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// scriptServer accepts one websocket upgrade by hand, writes first in the
// same write as the 101 response, and then runs script on the raw
// connection.
func scriptServer(t *testing.T, first []byte, script func(c net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		h := sha1.Sum([]byte(req.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
		resp := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
			base64.StdEncoding.EncodeToString(h[:]) + "\r\n\r\n"
		if _, err := c.Write(append([]byte(resp), first...)); err != nil {
			return
		}
		script(c)
	}()
	return "ws://" + ln.Addr().String() + "/socket/websocket?vsn=2.0.0"
}

func replyFrame(ref string) []byte {
	return []byte(`[null,"` + ref + `","phoenix","phx_reply",{"status":"ok","response":{}}]`)
}

// TestRandomFramingAllDispatched: random text messages (some fragmented, with
// control frames between fragments), pings and pongs, written in random
// chunks with random pauses: every message is dispatched.
func TestRandomFramingAllDispatched(t *testing.T) {
	for seed := int64(1); seed <= 40; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewSource(seed))
			var wire []byte
			msgs := 0
			for i := 0; i < 60; i++ {
				switch rng.Intn(5) {
				case 0:
					wire = append(wire, wsFrame(0x9, true, false, []byte("p"+fmt.Sprint(i)))...)
				case 1:
					wire = append(wire, wsFrame(0xA, true, false, nil)...)
				case 2: // fragmented with a ping between
					p := replyFrame(fmt.Sprint(i))
					k := rng.Intn(len(p))
					wire = append(wire, wsFrame(0x1, false, false, p[:k])...)
					wire = append(wire, wsFrame(0x9, true, false, []byte("x"))...)
					wire = append(wire, wsFrame(0x0, true, false, p[k:])...)
					msgs++
				default:
					pad := strings.Repeat(" ", rng.Intn(3)*200)
					wire = append(wire, wsFrame(0x1, true, false, append(replyFrame(fmt.Sprint(i)), pad...))...)
					msgs++
				}
			}
			finished := make(chan struct{})
			url := scriptServer(t, nil, func(c net.Conn) {
				go func() { _, _ = io.Copy(io.Discard, c) }()
				for len(wire) > 0 {
					n := min(len(wire), 1+rng.Intn(40))
					if _, err := c.Write(wire[:n]); err != nil {
						return
					}
					wire = wire[n:]
					if rng.Intn(3) == 0 {
						time.Sleep(time.Duration(rng.Intn(3)) * time.Millisecond)
					}
				}
				<-finished
			})
			opts := fastOptions(url)
			opts.HeartbeatInterval = time.Hour
			ctx, cancel := context.WithCancel(context.Background())
			s, ended := startRun(t, ctx, opts)
			deadline := time.Now().Add(5 * time.Second)
			for s.Stats().FramesIn < uint64(msgs) && time.Now().Before(deadline) {
				time.Sleep(2 * time.Millisecond)
			}
			got := s.Stats().FramesIn
			close(finished)
			cancel()
			select {
			case <-ended:
			case <-time.After(10 * time.Second):
				t.Fatalf("run did not end")
			}
			if got != uint64(msgs) {
				t.Fatalf("dispatched %d of %d messages", got, msgs)
			}
		})
	}
}

// readClientFrames parses the client's (masked) frames and calls onClose
// at its close frame.
func readClientFrames(c net.Conn, onClose func()) {
	br := bufio.NewReader(c)
	for {
		var h [2]byte
		if _, err := io.ReadFull(br, h[:]); err != nil {
			return
		}
		n := uint64(h[1] & 0x7f)
		switch n {
		case 126:
			var b [2]byte
			if _, err := io.ReadFull(br, b[:]); err != nil {
				return
			}
			n = uint64(binary.BigEndian.Uint16(b[:]))
		case 127:
			var b [8]byte
			if _, err := io.ReadFull(br, b[:]); err != nil {
				return
			}
			n = binary.BigEndian.Uint64(b[:])
		}
		if h[1]&0x80 != 0 {
			n += 4
		}
		if _, err := io.CopyN(io.Discard, br, int64(n)); err != nil {
			return
		}
		if h[0]&0x0f == 0x8 {
			onClose()
		}
	}
}

// TestStopWhileBusyEndsOnce: Stop at a random moment while the server
// streams messages, pings and pauses; the server answers the close (or
// not, for odd seeds). The run must end (well before the library's own 5 s
// close bound), done once, and nothing leaks.
func TestStopWhileBusyEndsOnce(t *testing.T) {
	for seed := int64(1); seed <= 30; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewSource(seed))
			answer := seed%2 == 0
			stopAfter := time.Duration(rng.Intn(60)) * time.Millisecond
			var wmu sync.Mutex
			url := scriptServer(t, nil, func(c net.Conn) {
				closed, gone := make(chan struct{}), make(chan struct{})
				var once sync.Once
				go func() {
					defer close(gone)
					readClientFrames(c, func() {
						once.Do(func() {
							if answer {
								wmu.Lock()
								_, _ = c.Write(wsFrame(0x8, true, false, []byte{0x03, 0xe8}))
								wmu.Unlock()
							}
							close(closed)
						})
					})
				}()
				r := rand.New(rand.NewSource(seed * 7))
				for i := 0; ; i++ {
					var f []byte
					switch r.Intn(4) {
					case 0:
						f = wsFrame(0x9, true, false, []byte("p"))
					default:
						f = wsFrame(0x1, true, false, replyFrame(fmt.Sprint(i)))
					}
					k := r.Intn(len(f) + 1)
					wmu.Lock()
					_, err := c.Write(f[:k])
					wmu.Unlock()
					if err != nil {
						return
					}
					if r.Intn(4) == 0 {
						time.Sleep(time.Duration(r.Intn(5)) * time.Millisecond)
					}
					wmu.Lock()
					_, err = c.Write(f[k:])
					wmu.Unlock()
					if err != nil {
						return
					}
					select {
					case <-closed:
						<-gone // silent, the socket open until the client closes it
						return
					default:
					}
					if r.Intn(3) == 0 {
						time.Sleep(time.Duration(r.Intn(10)) * time.Millisecond)
					}
				}
			})
			opts := fastOptions(url)
			opts.HeartbeatInterval = time.Hour
			opts.CloseTimeout = 300 * time.Millisecond
			s, ended := startRun(t, context.Background(), opts)
			eventually(t, "connected", s.Connected)
			time.Sleep(stopAfter)
			s.Stop(nil)
			select {
			case <-ended:
			case <-time.After(4 * time.Second):
				t.Fatalf("run did not end within 4 s of Stop (answer=%v)", answer)
			}
			select {
			case <-ended:
				t.Fatalf("done called twice")
			case <-time.After(50 * time.Millisecond):
			}
		})
	}
}
