// Package connector is the contract between the bridge and each chat
// platform. Start with [Connector]: Connect dials, Receive hands over the next
// inbound [Event] with an [AckFunc], Close ends the session. Platforms that
// turn worker commands into platform calls also implement [Executor].
//
// Connectors never import NATS: the bridge publishes what Receive returns and
// executes what workers send. Errors are classified here ([Permanent],
// [BadRequest], [PlatformError]) so the bridge can decide between retrying,
// dead-lettering and giving up without knowing the platform.
package connector
