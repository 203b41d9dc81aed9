// Package conntest is the conformance suite every connector runs against its
// platform's emulator. Start with [Run]: a platform's test gives it a
// [Harness] (how to build a connector against a fresh emulator) and a
// [Platform] per emulator (how to make the emulator produce events, fail,
// and show what it received), and the suite checks what the bridge relies
// on without knowing the platform:
//
//   - Lifecycle: Connect, Receive with acks, Close, and Connect again on the
//     same connector; every produced event arrives once, in its room.
//   - CloseIdempotent: Close before Connect and twice after it; Receive
//     outside a session fails with [connector.ErrNotConnected]; Receive
//     returns when its context ends.
//   - Reconnect: the socket or stream is cut while events are produced. The
//     suite drives the connector as the bridge's supervisor does (on a
//     Receive error that is not permanent it Closes and Connects again) and
//     checks that nothing is lost (every produced event is received) and
//     nothing is doubled (an event acked before the loss never comes back;
//     only events in flight at the loss may be delivered twice).
//   - MalformedFrame: a frame that does not parse is an error or is
//     skipped, never a crash or a permanent error, and the events after it
//     arrive.
//   - CommandErrors ([connector.Executor]): bad input is a
//     [connector.RequestError]; a 4xx refusal a non-retryable
//     [connector.PlatformError]; 429 and 5xx retryable ones (429 with its
//     Retry-After); a transport failure neither permanent nor a request
//     error (or, if the connector retried it safely, executed once); the
//     next command works again.
//   - ProcessingTracker, Reconciler, Stats, Notifier: the optional
//     abilities, when the connector has them (Notifier driven as the
//     bridge's runner drives it: TryReceive until nothing, then Notify).
//
// Every subtest ends with a goroutine check: once Close returned, no
// goroutine runs code of the connector's package (or of
// [Harness.Packages]), waited for on a deadline.
//
// Run calls no t.Parallel: the goroutine check compares the goroutines of
// the connector's packages before and after, so other tests of the same
// connector package must not run beside it.
package conntest
