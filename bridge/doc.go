// Package bridge wires the bridge together: NATS (embedded or remote), the
// contract's streams, one supervised session per configured connection, the
// inbound publisher, the connectors' state store, and the HTTP endpoints for
// health, status and metrics.
//
// Start with [New] and [Bridge.Run]. Each connection runs in [supervisor]:
// connect, receive events and publish them to JetStream ([publisher]),
// reconnect on loss with the connection's reconnect policy, stop for good on
// a permanent error such as being superseded. The package names no platform:
// the program passes the platforms it ships in [Options.Registry] (package
// platforms). Only whole programs import it: cmd/bridge, and the end-to-end
// test stack (internal/testutil/e2e) and bench harness (cmd/bridge-bench/internal/bench), which run a
// real bridge.
package bridge
