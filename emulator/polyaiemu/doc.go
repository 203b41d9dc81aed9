// Package polyaiemu is an in-process emulator of the PolyAI Messaging
// API, written from the protocol reference (shared/platforms/polyai.md
// and the seed page it cites) and not from any client in this module,
// so a misunderstanding in a client cannot cancel itself out. It serves
// the REST endpoints and the /ws WebSocket over real HTTP and plays the
// PolyAI agent (and, on demand, a live human agent). The client is the
// end user's side: the bridge holds sessions on behalf of workers.
// Tests, benchmarks and `bridge emulate polyai` use it.
//
// Start with [New]: pass an [Options] (the zero value works), then
// [Server.Start] for a 127.0.0.1 listener, [Server.ListenAndServe] for
// a fixed address, or mount [Server.Handler] yourself. [Server.Close]
// stops every goroutine the Server started.
//
// # What it emulates
//
//   - POST /api/v1/access-token with X-Token (the connector token) and
//     X-Host (the registered host identifier, or a subdomain of a
//     registered web origin) returns {access_token, expires_in,
//     token_type: "Bearer"}; the token is an HS256 JWT with exp.
//   - POST /api/v1/sessions with Authorization: Bearer <token> and an
//     optional body {streaming_enabled, platform, device_type} returns
//     {session_id}. The session is bound to that token.
//   - Errors are the documented statuses and messages ("Missing
//     authentication headers", "Invalid access token", ...) in a body
//     {"message": "..."}.
//   - GET /ws?session_id=&access_token=[&cursor=] upgrades, or refuses
//     with the HTTP statuses of the reference: 400 "invalid connection
//     parameters", 404 "session not found" (unknown or ended), 401
//     "authentication failed" (bad, expired or another session's
//     token), 429 "connection limit exceeded for session" (over
//     Options.MaxSocketsPerSession, 10).
//   - On open, the history is replayed as EVENT_BATCH frames (at most
//     Options.MaxBatchEvents each), the first starting with
//     SESSION_START (capabilities: streaming, max_message_size_bytes,
//     max_reconnect_attempts, heartbeat_interval_seconds), then the
//     journaled events with a sequence above the cursor. The cursor is
//     a bare integer or "seq:<n>"; anything else replays from 0.
//     Events inside a batch carry their payload under the oneof key
//     ("poly_agent_message"), not "payload".
//   - Every server event has id, sequence (null for transient events:
//     THINKING, LIVE_AGENT_TYPING, heartbeat echoes, SYSTEM_MESSAGE,
//     the batches themselves), timestamp, type, payload, and metadata
//     {"custom": ...} only when echoing a client's custom metadata.
//   - Client events: REQUEST_POLY_AGENT_JOIN (payload must be {}),
//     USER_MESSAGE {text}, USER_TYPING {state}, USER_END_SESSION,
//     HEARTBEAT. All but USER_TYPING are echoed; the USER_MESSAGE echo
//     adds message_id. Anything else gets a SYSTEM_MESSAGE error:
//     "Event type not allowed: <type>" for a server type (including
//     ..._JOIN_WITH_GREETING_MESSAGE), else "Unknown event type or
//     invalid message format". The socket stays open.
//   - The agent: a join gives echo, POLY_AGENT_JOINED, THINKING and a
//     greeting; each user message gives echo, THINKING and a reply
//     (Options.Reply). With streaming_enabled the greeting and replies
//     are POLY_AGENT_MESSAGE_CHUNKs (shared message_id, chunk_index from
//     1, is_complete on the last). A user message before any join gets
//     "Error: Conversation ID not found in session".
//   - Handoffs ([Server.Handoff], [Server.ClientHandoff]), in the
//     documented orders; SESSION_END with REASON_USER_END,
//     REASON_USER_ABANDONED or REASON_NATURAL_END, then a 1000 close.
//   - The idle timeout (Options.IdleTimeout, 10 min): a session with no
//     inbound event (heartbeats count) ends REASON_USER_ABANDONED. One
//     goroutine checks all sessions; an idle session has no goroutine
//     or timer of its own (BenchmarkIdleSessions: about 1.2 KB each).
//
// # Driving it from tests
//
// [Server.CreateSession] skips the REST calls. [Server.Say] makes the
// PolyAI agent speak; [Server.Handoff], [Server.QueueStatus],
// [Server.LiveAgentJoin], [Server.LiveAgentTyping],
// [Server.LiveAgentSay], [Server.LiveAgentLeave],
// [Server.HandoffFailed], [Server.HandoffTimeout] and
// [Server.ClientHandoff] run handoffs; [Server.EndSession] ends a
// session with any reason. [Server.Session], [Server.Sessions],
// [Server.History], [Server.UserMessages] (with client_event_id and a
// Duplicate flag; SessionInfo.Duplicates counts them), [Server.Typing],
// [Server.Handshakes] and [Server.Connections] show what a client did.
//
// # Fault knobs
//
//   - [Server.DropSockets]: close a session's sockets without a close
//     frame; the session lives on.
//   - [Server.DropSocketsAfter]: the same after the next n journaled
//     events, to cut a client off mid-reply.
//   - [Server.CloseSockets]: close with a given code (4001, 4002, ...).
//   - [Server.DropUserMessages]: silently drop the next n USER_MESSAGEs
//     (no echo, no record), as the rate limit may.
//   - [Server.RefuseUserMessages]: answer the next n USER_MESSAGEs
//     with a SYSTEM_MESSAGE error only (no echo, no record).
//   - [Server.FailReplies]: answer the next n joins or messages with a
//     SYSTEM_MESSAGE error instead of the agent's answer.
//   - [Server.SendSystemMessage], [Server.SendMalformed].
//   - [Server.FailREST]: the next n REST calls fail with a status and
//     optional Retry-After (429 "rate limited" with Retry-After is the
//     usual use); [Server.RejectHandshakes] does the same to upgrades.
//   - [Server.ExpireSession]: end a session as the idle timeout does.
//   - [Server.ExpireToken]: a token stops working for REST and
//     handshakes (open sockets stay); Options.TokenTTL expires them by
//     the clock.
//
// # Inferred behaviour, kept easy to change
//
// The reference marks these as inferred or SDK-only findings:
//   - The oneof shape of batch events (Options.PlainBatchEvents turns it
//     off).
//   - The error body field "message" (the SDKs read it first).
//   - The strict cursor of the older pages (Options.StrictCursor).
//
// # Choices where the reference is silent
//
//   - SESSION_START is journaled as sequence 1 with a stable id and is
//     put first in the first batch of every replay, whatever the
//     cursor.
//   - Streamed chunks are journaled one by one (each has a sequence) and
//     replayed as chunks, not consolidated. A message with attachments
//     or suggestions ends with an empty-text chunk carrying them.
//   - Echoes of USER_MESSAGE, REQUEST_POLY_AGENT_JOIN and
//     USER_END_SESSION are journaled and go to every socket of the
//     session; heartbeat echoes and SYSTEM_MESSAGE errors are transient
//     and go to the sending socket only.
//   - A resent USER_MESSAGE is not deduplicated: it is a second turn,
//     echoed again and flagged Duplicate when its client_event_id
//     repeats.
//   - A handshake counts as activity for the idle timeout. An ended
//     session answers handshakes with 404. An expired token does not
//     close sockets already open.
//   - Agent failures (FailReplies) echo the event first, then send the
//     error. A join when an agent already holds the conversation is
//     echoed and changes nothing; after a client-managed, failed or
//     timed-out handoff nobody answers until a new join.
//   - Client events carrying id, sequence or timestamp have them
//     ignored. Empty USER_MESSAGE text is invalid. A frame over
//     Options.MaxMessageSize closes the socket with 1009, a binary
//     frame with 1003.
//   - Sessions, tokens, history, handshake records and write queues are
//     bounded (Options); a full history ends the session
//     (REASON_NATURAL_END) after a SYSTEM_MESSAGE saying so.
//
// The emulator never logs payloads or tokens.
package polyaiemu
