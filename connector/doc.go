// Package connector is the contract between the bridge and each chat
// platform. Start with [Connector]: Connect dials, Receive hands over the next
// inbound [Event] with an [AckFunc], Close ends the session. Platforms that
// turn worker commands into platform calls also implement [Executor]; those
// that can say when an event is ready implement [Notifier], and a connected,
// idle session then holds no goroutine of the bridge's.
//
// A platform is registered as a [Factory]. It gets a [Config]: its own
// settings table, decoded strictly with [Settings.Decode] into the
// platform's struct, and its [Secrets], resolved on demand with
// [Secrets.Get] (every <name>_env / <name>_file key of the table; a file is
// read again at each call, so a rotated key heals at the next reconnect).
// [Deps] bring a logger, an HTTP client and a [StateStore] for small state
// that must survive restarts. Lifecycle changes the connector recovers from
// by itself are [Event]s with a typed Lifecycle name (subjects.Lifecycles).
//
// Connectors never import NATS: the bridge publishes what Receive returns and
// executes what workers send. Errors are classified here ([Permanent],
// [BadRequest], [PlatformError]) so the bridge can decide between retrying,
// dead-lettering and giving up without knowing the platform.
package connector
