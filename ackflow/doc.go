// Package ackflow decides what happens to a JetStream message after an
// attempt to handle it, and dead-letters the ones that cannot succeed.
//
// Start with [Decide]: it turns the error of an attempt (classified by the
// connector package: [connector.IsPermanent], [connector.RetryAfter]) and the
// attempt count into a [Decision] — acknowledge, retry after a delay,
// terminate, or report progress. The decision is plain data so the policy can
// be tested as a table (see the package example); [Apply] maps it onto the
// JetStream verbs Ack, NakWithDelay (never a bare Nak), TermWithReason and
// InProgress.
//
// [DeadLetter] publishes a message that was given up on to
// P.dlq.<platform>.<conn>.<room>.<name> with its original body and headers
// and the reason headers of the contract. [Heartbeat] keeps messages a
// handler still holds (queued, waiting for a retry, or slow) from being
// redelivered behind its back.
package ackflow
