// Package phoenix is a generic Phoenix Channels v2 client (JSON array
// frames, vsn=2.0.0) on github.com/coder/websocket. It knows nothing about
// any platform built on Phoenix: topics, events and payloads are the
// caller's.
//
// Start with NewSocket and Options, register topics with Socket.Channel,
// then call Socket.Run on its own goroutine (or Socket.Start, which runs
// it on goroutines of the socket's own and reports the end to a callback)
// and Channel.Join. The run keeps the connection up: it sends heartbeats,
// closes a connection whose heartbeat goes unanswered, redials with
// Backoff (Classify decides what is terminal and how long a server asked
// us to wait), and rejoins every joined channel with a fresh join_ref.
//
// An idle live connection holds one goroutine, with the runtime's smallest
// stack: a waiter in a one-byte read of the connection (stream.go). The
// websocket library never gets bytes past the end of the frame it is in,
// so once it has read a whole message the stream knows whether anything
// is left; if nothing is, the reader parks and the waiter goes on with it
// when the peer sends. The reader decodes and dispatches frames (it calls
// onMessage, which may block as back-pressure). The writer, which drains a
// bounded send queue (a full queue fails the send with ErrSendQueueFull
// instead of blocking), runs only while frames wait; the heartbeat, reply
// timeouts and delayed rejoins are runtime timers whose callbacks run
// briefly on goroutines of their own; a closer runs from the connection's
// first failure until its websocket is closed. The run stops and waits for
// all of them before it redials or ends.
//
// Invariants: ctx is the first argument of every blocking call and is
// never stored; no lock is held while calling user callbacks or writing
// to the websocket; payloads and URL queries (which carry keys) are never
// logged. Frame, DecodeFrame and EncodeFrame expose the wire format for
// emulators and tests.
package phoenix
