// Package retry is the bridge's one backoff rule: capped exponential waits
// with jitter, so that many loops retrying after the same outage (a NATS
// restart, a platform 503) spread out instead of retrying in lockstep.
//
// Start with [Policy]: Initial doubled per attempt, capped at Max, then
// jittered ([EqualJitter] unless told otherwise). A loop that retries
// until it succeeds keeps a [Backoff] (from [Policy.Start]) and calls
// [Backoff.Next] after each failure, [Backoff.Reset] after a success.
// [Sleep] waits on a context. The package needs only the standard library,
// so connectors and the NATS side use the same rule.
package retry
