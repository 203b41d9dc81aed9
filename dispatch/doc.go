// Package dispatch is managed dispatch: the easy path for workers. For one
// [[dispatch]] rule it consumes the rule's events from BRIDGE_EVENTS, sends
// each as a core NATS request to P.work.<platform>.<conn>.<room>.<event>,
// accepts several replies (processing, processed with commands, failed with
// retry), runs the reply's commands in order and settles the message in
// JetStream and, when the platform keeps a processing state
// ([connector.ProcessingTracker], Options.Tracker), on the platform
// (processing / processed / failed, with the commands the tracker names).
//
// Start with [New] and [Dispatcher.Start] (then [Dispatcher.Drain] once its
// context ends; [Dispatcher.Run] is both). It consumes on the bridge's
// consumer engine (package consume: per-room order, heartbeats, the crash
// barrier, the drain); this package is its handler: one message's life is
// in attempt.go ([Dispatcher.handle]), where a rule starts and what it
// finished in start.go.
//
// Guarantees: at most MaxInFlightPerRoom messages of a room are out at once
// (1 keeps the room's order); a message no worker answers in time, or that a
// worker fails with retry, is retried with backoff up to MaxAttempts, then
// marked failed on the platform and dead-lettered. When no worker is
// subscribed at all the message waits (the attempt is not counted): workers
// being down never fails a message. Reply commands and processing-state
// calls carry ids derived from the event id, so a redelivery after a bridge
// restart re-runs the worker at most, never the platform calls it led to.
package dispatch
