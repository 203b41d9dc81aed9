// Package agentconnect connects the bridge to an AgentConnect server (the
// FastAPI demo API of the agentconnect framework: form login with a JWT,
// chat sessions over REST, one JSON WebSocket per session). Start with
// [Factory]; docs/platforms/agentconnect.md is the user's view.
//
// A room is a session id. The connector logs in with the username and
// password secrets and logs in again ahead of the token's exp, or at once
// when the platform refuses the token (a REST 401, a handshake 403).
// Sessions created with create_session are kept in the state store
// (sessions/<id>), so a restarted bridge reattaches every open session;
// each open session has exactly one socket (see hub), which redials by
// itself and reports gap_possible, since the platform replays nothing.
//
// Frames carry no ids: an event's key is [FrameKey] (session, occurrence
// count, content hash), the same on every socket of the session.
// send_message writes a frame and, in a human_agent session, waits for
// the frame that answers it: a cooldown becomes a [connector.HoldRoom]
// error (code cooldown, retryable, the room's next command waits the
// seconds left), a stop the lifecycle event conversation_ended, and the
// platform's system notices lifecycle events by their exact text. After
// a cooldown the server waits its reply timeout, sends the "taking
// longer than expected" notice and only then reads the next frame; each
// cooldown is owed one such notice, which answers no later message (the
// room's hold may end, and its next message go out, before it comes).
package agentconnect
