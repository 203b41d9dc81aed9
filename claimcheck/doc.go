// Package claimcheck keeps payloads too large for one NATS message in a
// JetStream object store bucket and hands out a reference instead (the
// claim-check pattern), so that a message over NATS's max_payload neither
// blocks the messages behind it nor vanishes.
//
// Start with [Store.Put] (the bridge's side: store bytes, get a
// [subjects.DataRef]) and [Fetch] (a worker's side: bytes by reference).
// [PayloadSize] and [Fits] measure a message the way the NATS client does
// before it refuses to publish one.
//
// Each connection has its own bucket ([subjects.PayloadBucket]), created on
// first use with the events stream's max age. Objects are named by the
// SHA-256 of their bytes, so storing the same payload again (catch-up after a
// restart, a redelivered work request) writes nothing new. [Fetch] reads with
// the stream's direct-get API only: a worker needs no right to create
// consumers (a consumer's creator chooses where the server delivers), see
// docs/security.md.
package claimcheck
