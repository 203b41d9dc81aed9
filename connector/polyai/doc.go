// Package polyai is the connector of PolyAI's Messaging API. The bridge
// plays the end user there: it holds PolyAI sessions on behalf of
// workers, and a room is a session id. Start with [Factory] (or [New]):
// settings are [Settings], the secret is connector_token.
//
// Workers open a session with the create_session command (a new access
// token, which is a new end-user identity, and a session bound to it);
// the connector then keeps one WebSocket per session: it asks the agent
// to join (unless told not to), sends heartbeats at the interval
// SESSION_START advertises, treats a socket silent for two intervals as
// dead, and redials with the reconnect backoff, keeping the session id,
// token and cursor. A handshake refused with 401, or with 404 once the
// session may have idled out (no sign of life for PolyAI's idle
// lifetime), or a close with 4001, means the platform no longer takes
// the session: the connector opens a new one and says so with the
// lifecycle event session_replaced (old and new ids). A session the
// platform ended is never replaced: SESSION_END (forwarded as
// session_end), or a 404 sooner than the idle lifetime (its SESSION_END
// went to no socket; lifecycle event session_ended), ends it, and later
// commands for it are refused with session_ended (end_session succeeds).
//
// Inbound, history batches are flattened and every event is handed over
// in sequence order, each sequence once (the server's event id is the
// event's Key, so its Nats-Msg-Id); typing and thinking are marked
// transient; streamed chunks go out as they come and, once complete (or
// after Settings.StreamTimeout), as one assembled poly_agent_message.
// The cursor moves only over stored events.
//
// Outbound, send_message, join and end_session are accepted by their
// echo, matched on metadata.custom.client_event_id (the command id); a
// late echo makes the connector send the event again with the same id,
// up to Settings.MaxResends times, after which the command's outcome is
// unknown ([connector.Sent]). A SYSTEM_MESSAGE error carrying the id
// answers the command with a [connector.PlatformError].
//
// Every open session (id, token, cursor, joined, last sign of life)
// lives in the state store, so a restarted bridge resumes each one from
// its cursor; ended and replaced sessions are removed from it. An alive
// stamp, one key written every 30s, dates the sockets recorded open
// (see aliveKey), so a session that was alive shortly before a restart
// and meets 404 is known ended, not replaced.
package polyai
