// Package cmdexec executes the worker commands of one connection: the
// durable ones on P.cmd.<platform>.<conn>.<room>.<command> (JetStream stream
// COMMANDS) and the synchronous ones on P.rpc.<platform>.<conn>.<command>.
//
// Start with [New] and [Executor.Start], which returns at once; once its
// context ends, [Executor.Drain] drains ([Executor.Run] is both, blocking).
// The executor consumes the durable consumer cmd_<conn> on the bridge's
// consumer engine (package consume), which owns the fetch loop, per-room
// order (each room strictly in stream order, at most MaxParallelRooms rooms
// at once), in-progress heartbeats, the crash barrier and the drain; this package is the engine's handler (durable.go):
// parse, execute with in-place retries (attempt.go, so the room's later
// commands wait behind a retried one), store, publish the result and
// dead-letter a failure. It also serves the RPC queue subscription with a
// bounded worker pool started on demand (rpc.go); the subscription delivers
// through the process's [natsbus.Mux] ([Options.Mux]) and the commands in
// hand are kept alive by its shared heartbeat ([Options.Heartbeat]), so an
// idle executor holds no goroutine: its engine is parked.
//
// Platform errors beyond HTTP ([connector.BackOff], [connector.HoldRoom],
// [connector.Sent]) are classified by [ackflow.Decide]: a cooldown ends the
// command (retryable, retry_after_ms in the error) and holds that room's
// next command (hold.go); a call that may have reached the platform is
// never sent again (unknown_outcome). A platform whose commands stream
// ([connector.StreamExecutor]) has its events stored before the result
// (stream.go).
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
// Shutdown: when Start's ctx ends no new command starts, running ones and RPC
// requests get DrainTimeout to finish (then their calls are cancelled), and
// the engine hands everything still in hand back with NakWithDelay in
// stream-sequence order. A restarted executor that finds messages its
// predecessor left pending holds newer ones back until they are done, so
// per-room order survives restarts.
package cmdexec
