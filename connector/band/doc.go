// Package band connects one Band (formerly Thenvoi) agent to the bridge: a
// Phoenix Channels socket for events, the agent REST API for catch-up and for
// worker commands.
//
// Start with [Factory] (or [New]) and [Connector.Connect]. A connection's
// [Settings] come from its [connection.settings] table; the API key is the
// secret api_key, read again at every connect, socket redial and REST 401.
// A session ([session]) joins agent_control, agent_rooms and
// agent_contacts, lists every room and joins
// its chat_room and room_participants channels concurrently, and after every
// (re)connect drains each room's unprocessed messages over REST while holding
// that room's live pushes, so each room's events leave in order and a message
// seen on both paths is published once. A supersede push ends the connection
// for good. [Connector.Execute] maps worker commands to REST calls
// (commands.go).
package band
