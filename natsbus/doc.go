// Package natsbus owns the bridge's NATS side: the embedded nats-server
// ([StartEmbedded]), the client connection with auth, TLS, endless reconnects
// and logged connection events ([Connect]), and the idempotent provisioning of
// the contract's JetStream streams ([EnsureStreams]). A [Mux] serves many
// core subscriptions (one per connection) with one channel and one
// goroutine.
//
// Start with [Connect]: given an empty URL it connects in-process to the
// embedded server it is handed.
package natsbus
