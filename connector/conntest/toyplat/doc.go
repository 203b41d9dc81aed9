// Package toyplat is the connector of "toy", a platform that exists only in
// this repository's tests (its specification and emulator are in package
// toyemu). It exists to prove that the bridge's core is platform-neutral: it
// is unlike Band in every way the core could depend on, and everything it
// needs lives in this package.
//
// Start with [Factory] (the registry entry, platform "toy") or [New]. The
// connector reads the platform's Server-Sent Events stream (GET /v1/events)
// and remembers how far the bridge has stored it: an event is settled when
// its [connector.AckFunc] is called with nil, and the connector resumes
// with Last-Event-ID after the last event before which all are settled, so
// an event not stored comes back after a reconnect and a settled one never
// does. A lost stream or a frame that does not parse ends the session with
// an error wrapping [connector.ErrNotConnected]; the bridge reconnects (the
// connector has no reconnect loop of its own).
//
// Commands ([Connector.Execute]) are REST calls: "post" (args {"text",
// "in_reply_to"}, in a room), "progress" (args {"post", "stage", "note"})
// and "conversations". Posts carry the command id as Idempotency-Key. As a
// [connector.ProcessingTracker] it maps the bridge's processing states to
// the platform's progress stages (seen, done, dropped) of "post" events.
package toyplat
