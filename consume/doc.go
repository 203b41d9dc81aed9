// Package consume is the bridge's one JetStream consumer engine. The
// command executor and managed dispatch both run on it; each supplies a
// [Handler] for one message and gets, for free:
//
//   - a durable pull consumer created or updated at start, retried with
//     backoff until NATS answers;
//   - per-room order: the messages of one room (an ordering key taken from
//     the subject) start in stream order, at most MaxInFlightPerRoom at once,
//     while different rooms run in parallel up to MaxParallel, a busy room
//     handing its slot over after each message so no room starves another;
//   - in-progress heartbeats for every message in hand, so a message queued
//     behind its room or waiting on a slow call is not redelivered;
//   - the crash barrier ([ackflow.Barrier]): after a crash the predecessor's
//     unsettled messages come back as their ack timers run out, so every
//     message is held until they are back, then all run in stream order;
//   - with a doorbell (Options.Doorbell, Options.Mux), no cost while idle:
//     the fetch loop is a goroutine only while there is work. It keeps
//     pulling while pulls bring messages, while the crash barrier holds and
//     while a pull is under way, and parks (its goroutine ends, no pull
//     stays open on the server) once a pull comes back empty. A core NATS
//     subscription on the subjects the consumer's messages are published
//     on, delivered through the process's natsbus.Mux, only rings; a ring
//     starts the loop again, as do a NakWithDelay the engine sent coming
//     due, a NATS reconnect (Mux.Reconnected) and a safety timer
//     (IdleWake, 30s), all timers of the runtime's heap. A ring that comes
//     while the loop decides to park keeps it pulling. A parked engine
//     drains at once at shutdown. Without a doorbell the loop runs until
//     the engine's context ends;
//   - a drain at shutdown: running handlers get DrainTimeout to finish, then
//     their calls are cancelled, and every unsettled message is handed back
//     with one NakWithDelay in stream order, confirmed by a round trip.
//
// Start with [Options] and [Start], which returns at once: the consumer's
// setup runs on a goroutine that retries until NATS answers and, with a
// doorbell, ends once the engine runs. After Start's context ends,
// [Engine.Drain] drains. [Run] is both, blocking. The handler decides how
// a message is settled ([ackflow.Decision]); the engine applies it.
package consume
