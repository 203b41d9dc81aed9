// Package chatapiemu is an in-process emulator of the "Chat API"
// platform (AI Teammate's agents / teams / inbox REST API with SSE
// streaming), written from the protocol reference
// (shared/platforms/chatapi.md and the product text it starts from) and
// not from any client in this module, so a misunderstanding in a client
// cannot cancel itself out. Tests, benchmarks and `bridge emulate
// chatapi` use it.
//
// Start with [New]: pass an [Options] (the zero value works), then
// [Server.Start] for a 127.0.0.1 listener, [Server.ListenAndServe] for a
// fixed address, or mount [Server.Handler] yourself. Clients use
// [Server.BaseURL] (the server URL + "/api", as the real
// https://ai-teammate.net/api). [Server.Close] ends every stream and
// waits for every handler.
//
// # What it emulates
//
//   - Auth: "Authorization: Bearer <key>". The global key
//     ([Server.APIKey]) reaches everything; an agent-scoped key
//     ([Agent.APIKey]) only /agents/<its id>/...; a team-scoped key
//     ([Team.APIKey]) only /teams/<its id>/.... No or an unknown key: 401
//     (with WWW-Authenticate: Bearer); a key whose scope does not cover
//     the path: 403.
//   - POST /agents/:id/chat {message, context?, conversation_id?} →
//     {response, agent_id, agent_name} (+ tool_calls [{name, args,
//     result}] when the script has tools). Both turns are recorded.
//   - POST /agents/:id/chat/stream, same body → 200 text/event-stream of
//     "data: <json>" events: tool_start {tool, args} and tool_end {tool,
//     content: result} per scripted tool, then {"type":"text","content":
//     fragment} chunks, then {"type":"done","content":""}, then the
//     literal "data: [DONE]". Errors before the stream are ordinary
//     JSON errors.
//   - GET /agents/:id/history?limit=20 → {"messages": [{role, content,
//     created_at}]}: the last limit turns, oldest first.
//   - POST /teams/:id/chat {message, mode?} → {responses: [{agent_id,
//     agent_name, content}], summary, mode}. Modes: auto, round_robin,
//     parallel, debate, brainstorm, expert; no mode uses the team's
//     chat_mode.
//   - GET /agents/:id and GET /teams/:id (a client can check its key);
//     GET /agents (global key only) → {"agents": [...]}, oldest first.
//   - Errors are FastAPI bodies {"detail": "..."}; 422 carries pydantic's
//     list {"detail": [{type, loc, msg, input}]}; 429 carries an integer
//     Retry-After.
//
// # Unverified parts (chatapi.md §6)
//
// Only the routes of conversations, inbox and mark-read are known; their
// bodies are not. They are served as follows and every shape can be
// changed by an option:
//
//   - GET/POST /agents/:id/conversations, PUT/DELETE
//     /agents/:id/conversations/:conv_id: {"conversations": [...]},
//     create {title?}, rename {title}, delete drops the conversation's
//     turns. Chat bodies may name a conversation_id (404 when unknown)
//     and history filters by ?conversation_id=.
//     Options.DisableConversations turns them off (404).
//   - GET /agents/:id/inbox → {"messages": [{id, role: "assistant",
//     content, type, created_at}]}: the unread items, oldest first, with
//     ids that never change. Items come only from [Server.AddInboxItem]
//     (e.g. agent reminders). Options.InboxListKey and
//     Options.InboxItemJSON reshape it; Options.DisableInbox turns it off.
//   - POST /agents/:id/mark-read accepts {"message_ids": [...]},
//     {"message_id": "..."} or an empty body / {} (every unread item) →
//     {"success": true, "marked": n}; Options.MarkRead accepts only one
//     of them (422 otherwise).
//
// # Driving it from tests
//
// [Server.AddAgent], [Server.AddTeam], [Server.SetScript] (text,
// fragment count, tool calls, per-fragment delay) and
// [Server.AddInboxItem] set the platform up; [Server.History],
// [Server.ChatPosts] (every POST to an agent's chat routes, whatever its
// outcome), [Server.TeamChats], [Server.TeamChatPosts],
// [Server.InboxItems] (read time and count per item),
// [Server.MarkReadCalls], [Server.Conversations], [Server.Requests]
// (method, path, status, key scope, body), [Server.ActiveStreams] and
// [Server.StalledStreams] show what a client did.
//
// # Fault knobs
//
//   - [Server.FailNext]: the next n calls fail with a status (429, 5xx,
//     ...) and an optional Retry-After; [Server.FailRoute] for one route;
//     [Server.HangUpRoute] closes the connection without an answer.
//   - Options.RateLimit / [Server.SetRateLimit]: a token bucket per key;
//     over it, 429 with Retry-After (seconds until the next token).
//   - [Server.InjectStreamFault] for the next streams of an agent:
//     [StreamCut] after n fragments (connection closed without done or
//     [DONE]), [StreamStall] after n fragments (until the client leaves,
//     [Server.ReleaseStalls] or Close), [StreamError] after n fragments
//     (an error chunk, then [DONE]).
//   - Script.FragmentDelay: a slow stream; [Server.SetDelay]: a slow
//     server.
//   - [Server.RevokeKey]: a key stops working (401).
//
// # Choices where the reference is silent
//
//   - Check order: body size (413), SetDelay, injected fault, 401, 429,
//     403, 422, 404.
//   - Turns: the user turn is recorded when a chat is accepted, the
//     assistant turn when generation ends: at the end of a stream, when
//     the client leaves mid-stream (generation goes on server-side), and
//     on a cut (the network failed, not the server; Options.DropReplyOnCut
//     leaves it out). A stalled stream whose client leaves, and an error
//     chunk, record no assistant turn. A rejected call records nothing.
//   - Fragments: by default one per word (with its leading space), as in
//     the documented "Hello" / " there!" example; the default answer is
//     "Echo: " + the message. Tool chunks come before text.
//   - An error chunk is {"type":"error","content":message} followed by
//     [DONE] and no done chunk.
//   - Text chunks have type "text"; Options.TextChunkType switches to
//     "token" (the JavaScript SDK page's spelling).
//   - created_at is RFC 3339 in UTC with whole seconds, as in the
//     documented example (Options.TimeFormat). No message ids in history.
//   - A message must be a non-blank string; history ?limit= must be 1..100
//     (Options.MaxHistoryLimit), else 422; extra body fields are ignored.
//   - Team chat: "auto" resolves to Options.AutoMode ("parallel") and
//     adds "auto_selected": true; "expert" answers with the team's first
//     agent, every other mode with all agents in order, each with its
//     script; a team without agents gets 400. Team chats do not write the
//     agents' histories. Only round_robin (not round-robin) is accepted.
//   - Unknown routes: 404 {"detail": "Not Found"} before authentication.
//   - Bodies over Options.MaxBodyBytes (1 MiB): 413. More than
//     Options.MaxStreams concurrent streams: 503.
//   - Not emulated: JWT login, agent/team CRUD, webhooks, shared links,
//     credits, idempotency keys, SSE event ids or resume.
//
// The emulator never logs payloads or keys.
package chatapiemu
