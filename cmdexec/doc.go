// Package cmdexec executes the worker commands of one connection: the
// durable ones on P.cmd.<platform>.<conn>.<room>.<command> (JetStream stream
// COMMANDS) and the synchronous ones on P.rpc.<platform>.<conn>.<command>.
//
// Start with [New] and [Executor.Run]. Run owns everything it starts (run.go):
//
//   - a fetch loop on the durable pull consumer cmd_<conn>, with at most
//     MaxAckPending messages in hand;
//   - a room scheduler (sched.go): one goroutine per room with queued
//     commands, at most MaxParallelRooms at once, each running its room
//     strictly in stream order; a transient failure is retried in place
//     (attempt.go), so the room's later commands wait behind it;
//   - an [ackflow.Heartbeat] sending InProgress for every message in hand,
//     queued, waiting for a retry or executing, so AckWait does not expire
//     behind the executor's back;
//   - the RPC queue subscription with a bounded worker pool (rpc.go).
//
// Each command id (Nats-Msg-Id, or one derived from the stream sequence and
// timestamp) executes at most once: its result is stored in the KV bucket
// <STREAMPREFIX>_EXECUTED before the message is settled, and a redelivered
// or re-published id is answered from there, result re-published, without
// executing (store.go, durable.go). Results are therefore at least once,
// executions at most once.
//
// [Executor.Do] runs one command directly with the same retry policy and
// the same idempotency store; RPC and managed dispatch use it.
//
// Shutdown: when Run's ctx ends no new command starts, running ones get
// DrainTimeout to finish (then their calls are cancelled), and everything
// still in hand is handed back with NakWithDelay in stream-sequence order.
// A restarted executor that finds messages its predecessor left pending
// (handed back, or lost in a crash until AckWait) holds newer messages back
// until the ack floor passes them, so per-room order survives restarts.
package cmdexec
