// Package phoenix is a generic Phoenix Channels v2 client (JSON array
// frames, vsn=2.0.0) on github.com/coder/websocket. It knows nothing about
// any platform built on Phoenix: topics, events and payloads are the
// caller's.
//
// Start with NewSocket and Options, register topics with Socket.Channel,
// then call Socket.Run on its own goroutine and Channel.Join. Run keeps
// the connection up: it sends heartbeats, closes a connection whose
// heartbeat goes unanswered, redials with Backoff (Classify decides what
// is terminal and how long a server asked us to wait), and rejoins every
// joined channel with a fresh join_ref.
//
// An idle live connection has one goroutine: Run's own, which reads and
// dispatches frames (it calls onMessage, which may block as
// back-pressure). The writer, which drains a bounded send queue (a full
// queue fails the send with ErrSendQueueFull instead of blocking), runs
// only while frames wait; the heartbeat, reply timeouts and delayed
// rejoins are runtime timers whose callbacks run briefly on goroutines of
// their own; a closer runs from the connection's first failure until its
// websocket is closed. Run stops and waits for all of them before it
// redials or returns.
//
// Invariants: ctx is the first argument of every blocking call and is
// never stored; no lock is held while calling user callbacks or writing
// to the websocket; payloads and URL queries (which carry keys) are never
// logged. Frame, DecodeFrame and EncodeFrame expose the wire format for
// emulators and tests.
package phoenix
