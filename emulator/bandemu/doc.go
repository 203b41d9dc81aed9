// Package bandemu is an in-process emulator of the Band (formerly
// Thenvoi) agent platform, written from the protocol reference
// (shared/platforms/band.md) and not from any client in this module, so
// a misunderstanding in a client cannot cancel itself out. It serves
// the agent REST API (/api/v1/agent/...) and the Phoenix Channels v2
// WebSocket (/api/v1/socket/websocket) over real HTTP. Tests,
// benchmarks and `bridge emulate band` use it.
//
// Start with [New]: pass an [Options] (the zero value works), then
// [Server.Start] for a 127.0.0.1 listener, [Server.ListenAndServe] for
// a fixed address, or mount [Server.Handler] yourself. [Server.Close]
// stops every goroutine the Server started.
//
// # What it emulates
//
//   - Auth: REST needs X-API-Key; the socket needs vsn=2.0.0, the key
//     as an x-api-key header or api_key query parameter, and an
//     agent_id matching the key (403 otherwise).
//   - One live socket per agent: a newer socket makes the server push
//     supersede on agent_control:{agent} to the older one and close it
//     (1000); on_conflict=reject answers 409 connection_conflict instead.
//   - Phoenix frames [join_ref, ref, topic, event, payload]: heartbeat
//     replies, joins of agent_control, agent_rooms, agent_contacts,
//     chat_room and room_participants (room topics only for rooms the
//     agent is in), leave, rejoin closing the old channel, and pushes
//     carrying the channel's join_ref with a null ref. A socket that
//     receives nothing for Options.HeartbeatTimeout is closed (1000).
//   - Rooms, participants, messages, per-agent processing state with
//     attempts (/processing, /processed, /failed, /messages/next),
//     events, context, activity and contacts, with Band's error bodies
//     {"error":{"code","message","request_id","details"}}.
//   - message_created goes only to agents mentioned in a text message
//     they did not send, and only on a joined chat_room channel.
//
// # Driving it from tests
//
// [Server.AddUser], [Server.AddAgent], [Server.AddRoom] and
// [Server.PostUserMessage] create platform state (and push the events a
// real platform would); [Server.AgentMessages], [Server.AgentEvents],
// [Server.Status], [Server.Pending] and [Server.Requests] show what a
// client did.
//
// # Fault knobs
//
//   - [Server.DropSockets]: close every socket without a close frame.
//   - [Server.Supersede]: push supersede and close every socket now
//     ([Server.Supersedes] counts every supersede).
//   - [Server.StallHeartbeats]: stop answering heartbeats.
//   - [Server.SendMalformed]: write a frame that is not JSON.
//   - [Server.SetPushesEnabled](false): keep state but send no pushes,
//     so clients must catch up with /messages/next.
//   - [Server.FailREST]: the next n REST calls fail with a status and
//     an optional Retry-After.
//   - [Server.FailRoute]: the same, for one method and path only
//     ([Server.ClearRouteFaults] cancels).
//   - [Server.HangUpRoute]: the next n calls of one method and path get
//     no answer: the connection is closed (a transport failure).
//   - [Server.RejectUpgrades]: the next n upgrades are refused (429
//     too_many_requests, 503 tracking_failed) with retry_after.
//   - [Server.RedirectREST], [Server.RedirectUpgrades]: the next n REST
//     calls or upgrades get a 307 to another base URL.
//   - [Server.SetRESTDelay]: slow every REST response.
//
// The emulator never logs payloads or keys. testdata/phoenixjs holds a
// conformance script run with the official phoenix JS client
// (TestPhoenixJSConformance).
package bandemu
