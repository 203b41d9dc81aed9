// Package toyemu emulates "toy", a chat platform that exists only in this
// repository's tests. It is deliberately unlike Band (Server-Sent Events
// instead of a Phoenix WebSocket, a resumable event log instead of catch-up
// over REST, its own ids, commands and processing stages) so that a
// connector for it proves the bridge's core names no platform. It is written
// from the specification below, never from the connector (package toyplat),
// which it does not import.
//
// Start with [New] and [Server.Start]; [Server.Close] stops every goroutine.
// Tests create conversations and human posts with [Server.AddConversation]
// and [Server.Post], and read what the bot did with [Server.BotPosts] and
// [Server.Progress].
//
// # Specification (toy platform v1)
//
// One bot account per server, identified by a bearer token. Every request
// carries "Authorization: Bearer <token>"; without it the answer is 401.
//
// Errors are RFC 9457 problem documents (Content-Type
// application/problem+json): {"type": "<slug>", "title": "<text>",
// "status": <code>}. 429 and 503 carry a Retry-After header in seconds.
//
// GET /v1/events streams the bot's event log as text/event-stream. Each
// event is
//
//	id: <seq>
//	event: <type>
//	data: <one line of JSON>
//
// followed by a blank line. seq numbers the bot's log densely from 1. A
// client resumes with the request header Last-Event-ID: <seq>: the stream
// then starts with the event after seq; without it, it starts at the first
// event. The log is kept whole, so an event is never lost between two
// streams: a client that remembers the last event it handled sees the rest
// again. A comment line ": keepalive" is sent every KeepAlive. Types:
//
//	post    {"id", "conversation", "author", "text", "at"}: a human posted in a
//	        conversation the bot is in (the bot's own posts are not sent)
//	joined  {"conversation", "title"}: the bot was added to a conversation
//
// POST /v1/conversations/{conversation}/posts with {"text": "…",
// "in_reply_to": "<post id>"} (in_reply_to optional) posts as the bot and
// answers 201 with the post. An Idempotency-Key header makes a repeated
// call with the same key answer the first call's post instead of posting
// again. 400 (type "invalid") for an empty text, 404 (type "not_found")
// for an unknown conversation.
//
// PUT /v1/posts/{post}/progress with {"stage": "seen" | "done" | "dropped",
// "note": "…"} records how far the bot got with a human post (seen: working
// on it; done: answered; dropped: gave up, note says why) and answers 204.
// 400 for another stage, 404 for an unknown post.
//
// GET /v1/conversations answers {"conversations": [{"id", "title"}]}.
//
// # Fault knobs
//
//   - [Server.DropStreams]: cut every open event stream mid-body.
//   - [Server.SendGarbage]: write one event whose data is not JSON to every
//     open stream.
//   - [Server.FailNext]: the next REST call (not the stream) fails with a
//     status and, when given, a Retry-After.
//   - [Server.HangUpNext]: the next REST call gets no answer; the
//     connection is closed before the call is executed.
//
// The emulator logs nothing.
package toyemu
