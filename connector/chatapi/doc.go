// Package chatapi connects a Chat API account (AI Teammate's agents,
// teams and inbox: REST and Server-Sent Events, no socket) to the
// bridge.
//
// Start with [Factory] (or [New]). A connection's [Settings] come from
// its [connection.settings] table; the API key is the secret api_key,
// read at every Connect and again when the platform answers 401.
//
// Events reach NATS two ways. Worker commands ([Connector.ExecuteStream],
// commands.go, chat.go): "chat" in an agent's room streams the reply
// (POST /agents/:id/chat/stream) and emits a text_delta per fragment, in
// order, then one message_completed with the whole text and tool calls;
// a stream that breaks off (cut, stalled, an error chunk) emits
// message_failed with the partial text and ends with a [connector.Sent]
// error, since the platform may have taken the turn and a second POST
// costs the user credits: a chat is retried only when it failed before
// it was written out (or was refused with 429 or 503). "team_chat" in a
// team's room emits a team_response per member and a team_summary.
// Polling (inbox.go): Connect starts one poller per agent of
// settings.inbox_agents; each unread item is handed to Receive with its
// platform id as the key, and marked read only once the bridge acked it
// (after JetStream's PubAck), in batches. The record of stored and read
// items (the inbox cursor) lives in the state store, so a restarted
// bridge neither publishes an item twice nor leaves one unread. A failing
// poll backs off on the connection's reconnect policy.
//
// Every REST call waits for a token of its API key's bucket
// (settings.rate_limit, rate_burst); a 429 or 503 with Retry-After holds
// the key's calls for that long, capped at retry_after_max. Streams are
// parsed by a small Server-Sent Events reader of the package (sse.go)
// that follows the WHATWG rules.
package chatapi
