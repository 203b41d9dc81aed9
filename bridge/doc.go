// Package bridge wires the bridge together: NATS (embedded or remote), the
// contract's streams, one supervised session per configured connection, the
// inbound publisher, and the HTTP endpoints for health, status and metrics.
//
// Start with [New] and [Bridge.Run]. Each connection runs in [supervisor]:
// connect with backoff, receive events and publish them to JetStream
// ([publisher]), reconnect on loss, stop for good on a permanent error such as
// being superseded. Nothing imports this package except cmd/bridge.
package bridge
