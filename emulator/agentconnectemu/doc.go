// Package agentconnectemu is an in-process emulator of the AgentConnect
// demo API (a FastAPI server: form login, JWT, chat sessions and a
// JSON-over-WebSocket chat with AI agents), written from the protocol
// reference (shared/platforms/agentconnect.md, which wins where the
// project's README disagrees) and not from any client in this module.
// Tests, and `bridge emulate agentconnect`, use it.
//
// Start with [New]: pass an [Options] (the zero value works; every
// timing is an option so tests run fast), then [Server.Start] for a
// 127.0.0.1 listener, [Server.ListenAndServe] for a fixed address, or
// mount [Server.Handler]. [Server.Close] stops every goroutine the
// Server started. One user exists from the start: [DefaultUser] with
// [Server.Password].
//
// # What it serves
//
//   - POST /api/auth/login, an OAuth2 password form (username,
//     password, optional grant_type=password): 200 {access_token,
//     token_type "bearer", expires_in}; 401 "Invalid credentials" or
//     "User is inactive"; 422 with FastAPI's detail list on a missing
//     field. The token is an HS256 JWT (claims sub, exp, type "access",
//     jti), built with the standard library.
//   - POST /api/auth/verify: 200 {valid, user, type, exp, iat: null,
//     timestamp} or 401 "Invalid token".
//   - Every other route verifies the bearer token on every call: a bad
//     signature, a wrong alg, or exp in the past is 401 "Could not
//     validate credentials"; no token is 401 "Not authenticated".
//   - POST /api/chat/sessions/create with the CreateSessionRequest
//     rules: session_type human_agent (exactly 1 agent) or agent_agent
//     (exactly 2); provider openai|anthropic|groq|google; model one of
//     [Options.Models]; capabilities, personality, metadata and
//     interaction_modes typed; 422 otherwise. 429 "Maximum active
//     sessions reached" past [Options.MaxSessionsPerUser]. The answer
//     keys a human_agent's agent "ai_agent" and keeps agent_agent keys;
//     ids are session_<YYYYmmddHHMMSS>_<8 hex>, human_<sid>, ai1_<sid>,
//     ai2_<sid>.
//   - GET /api/chat/sessions/{id}: 404 "Session not found", 403 for
//     another user's session, then 500 as the reference's handler does
//     (200 with [Options.SessionGetWorks]).
//   - DELETE /api/chat/sessions/{id}: 200 {"status":"success","message":
//     "Session ended"} after a system notice "Session is being closed by
//     the owner."; open sockets stay open.
//   - Per-route fixed-window rate limits per client address, 429
//     {"detail":"Too Many Requests"} with Retry-After: login 10, verify
//     50, create 5, get 10, delete 5 per minute ([Options.RateLimits],
//     [Options.RateWindow], [Options.NoRateLimits]).
//   - GET /api/chat/ws/{session_id} with ?token= (checked first) or an
//     Authorization header. Missing or bad token, unknown session,
//     another user's session, and empty session data all refuse the
//     upgrade with HTTP 403 before accepting, as uvicorn turns a close
//     before accept (4003, 4004) into a 403. Several sockets per session
//     all get every broadcast.
//   - Frames {type, content, sender, receiver, timestamp, metadata},
//     all six keys on server frames with null for unset ones; the
//     server's ping is {"type","timestamp"} only, every
//     [Options.PingInterval] per socket, and refreshes the session's
//     activity. Client pings are ignored (no pong). A frame that is not
//     a JSON object, has an unknown type or a mistyped field gets an
//     error frame "Invalid message format: ..." and the socket stays
//     open.
//   - The scripted AI. human_agent: a client text is answered with a
//     text frame from ai1_<sid> to human_<sid> (the client's own frame
//     is not echoed) after [Options.ReplyDelay]; if no answer comes
//     within [Options.ReplyTimeout] the system notice "The AI agent is
//     taking longer than expected to respond. Please try again." is
//     broadcast. Each agent spends tokens (ceil(len/4) of the message
//     plus the same of its reply) against [Options.TokenBudget] per
//     [Options.TokenWindow]; past it the agent is in cooldown until the
//     window ends, and a message then gets a cooldown frame ("I am in
//     cooldown for N seconds. Please try again later.",
//     metadata.cooldown_remaining) followed by the slow notice. The
//     [Options.MaxTurns]-th message from one partner gets stop
//     ("Maximum conversation turns reached. Ending conversation.",
//     metadata.reason max_turns_reached); a client stop frame, or
//     __EXIT__ in a content, ends it silently. agent_agent: a client frame
//     is injected (sender/receiver as given, else agent 1 first, then
//     whichever did not speak last) and the two agents answer each
//     other, every answer broadcast as a text frame with
//     metadata.conversation_type agent_agent and original_type
//     response, until one sends stop; a cooldown is not forwarded to an
//     AI, so it ends the exchange silently.
//   - Session lifetime ([Options.SessionLifetime]) and an inactivity
//     sweep ([Options.MaxInactive] every [Options.CleanupInterval]) end
//     a session with "Session inactive for too long. Session will be
//     closed."; the stored-message cap ([Options.MaxMessages]) with
//     "Maximum message count reached. Session will be closed.". Sockets
//     stay open; the next client message gets "Session inactive for too
//     long. Please create a new session." or "Message limit reached.
//     Please create a new session." and that socket closes (1000).
//
// # Driving it from tests
//
// [Server.AddUser], [Server.SetUserActive], [Server.Token] and
// [Server.ExpireTokens] manage users and credentials; [Server.Sessions],
// [Server.Session] and [Server.Sockets] show sessions and their socket
// counts; [Server.Received] is what clients sent on a session and
// [Server.Broadcasts] what it broadcast.
//
// # Fault knobs
//
//   - [Server.ExpireTokens]: a token expires mid-run (open sockets stay).
//   - [Server.DropSockets]: close sockets without a close frame.
//   - [Server.CloseSockets]: close sockets with a code (4000, 1011).
//   - [Server.SendRaw]: write any text frame (not JSON, unknown type).
//   - [Server.RejectHandshakes]: refuse the next n handshakes with 403.
//   - [Server.ClearSessionData]: handshakes fail as for empty data (4004).
//   - [Server.ForceCooldown], [Server.ForceStop]: the AI cools down
//     for a given time, or ends the conversation now.
//   - [Server.SendSystem]: broadcast any system notice (Notice* texts).
//   - [Server.EndSession]: end a session as its lifetime would.
//   - [Server.StallPings]: stop the JSON pings.
//   - [Server.SetProviderKey]: a provider's key is missing (create 500).
//   - [Server.FailRoute], [Server.HangUpRoute]: the next calls of a REST
//     route answer a status (with a Retry-After) or hang up, unexecuted.
//   - [Server.Unwritten]: frames queued for a session's sockets and not
//     yet written, so a test can cut sockets without losing them.
//
// # Inferences of the reference, kept easy to change
//
//   - A found session's GET answers 500 ([Options.SessionGetWorks]).
//   - Failed handshakes are HTTP 403 ([Options.AcceptThenClose] accepts
//     and closes with 4003/4004 instead, as a server that completes the
//     handshake would).
//   - In human_agent a cooldown is not taken as the reply, so the slow
//     notice follows it ([Options.ReplyTimeout]).
//   - Sockets stay open when a session is deleted or cleaned up.
//
// # Choices where the reference is silent
//
//   - Timestamps are Python isoformat() of an aware UTC time
//     (2024-02-23T12:00:01.000000+00:00). A client timestamp must be
//     RFC 3339 or naive ISO 8601.
//   - A reply's metadata is {provider, model}. The default reply is
//     "Echo: " + content ([Options.Reply]).
//   - Only the per-minute token window is emulated (the hour window's
//     700 000 tokens are out of reach of a test). The cooldown text's N
//     is the seconds left rounded up; cooldown_remaining has 3 decimals.
//   - A stop counts as the answer (no slow notice after it); a
//     conversation that ended stays ended for the session's life, so
//     later messages from that partner only get the slow notice.
//   - Client frames of types other than text, ping and stop are
//     answered like text.
//   - A message to a deleted session gets the error frame "Invalid
//     session configuration"; to an expired or full one, the notice
//     above and a close (1000).
//   - Messages stored per session count the client's (non-ping) frames
//     and the AI's answers.
//   - agent_agent: at most 64 injected messages wait (an error frame
//     "Failed to process message: ..." past it, or for unknown agent
//     ids); exchanges run one at a time per session.
//   - A binary frame gets an error frame "WebSocket error: ..." and a
//     close with 4000.
//   - Rate limits count per route and client address, before the token
//     is checked; the windows are fixed, as fastapi-limiter's are.
//   - Missing token on REST is 401 "Not authenticated" with
//     WWW-Authenticate: Bearer; 403 on GET/DELETE of another user's
//     session says "Not authorized to access this session".
//   - Unknown routes are 404 {"detail":"Not Found"}; bodies over 64 KiB
//     are 413; frames over 1 MiB close the socket (1009).
//   - Bounds: [Options.MaxSocketsPerSession] (further handshakes 403),
//     [Options.MaxSessions], [Options.MaxRecorded],
//     [Options.WriteQueueSize] (a slow socket is dropped).
//   - Not emulated: the agents routes (/api/agents/...), providers, the
//     health check, Swagger; they answer 404 {"detail":"Not Found"}.
//
// Passwords, tokens and payloads are never logged.
package agentconnectemu
