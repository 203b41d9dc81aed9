package subjects

// Lifecycle names a lifecycle event: the last token of a P.sys… subject and
// the <event> of its envelope's type. The bridge publishes only the names
// listed by [Lifecycles]; a connector reports a socket's state changes with
// them too, so workers and the status board read one vocabulary.
type Lifecycle string

// The lifecycle events of a connection.
const (
	// LifecycleConnected: a session with the platform is up (again).
	// Data: reconnect true when the connector reconnected by itself.
	LifecycleConnected Lifecycle = "connected"
	// LifecycleDisconnected: the session or its socket was lost. Data:
	// reason; permanent true when the platform refused the session (the
	// bridge retries later: retry_in_ms).
	LifecycleDisconnected Lifecycle = "disconnected"
	// LifecycleReconnecting: the bridge reconnects after a wait. Data:
	// in_ms, attempt.
	LifecycleReconnecting Lifecycle = "reconnecting"
	// LifecycleSuperseded: another session of the same agent took over;
	// the bridge takes the agent back after a cool-off. Data: reason,
	// retry_in_ms.
	LifecycleSuperseded Lifecycle = "superseded"
	// LifecycleGapFilled: the catch-up after a (re)connect finished. Data:
	// count (events found), rooms.
	LifecycleGapFilled Lifecycle = "gap_filled"
	// LifecycleLeaseAcquired: this process now runs the connection. Data:
	// owner, instance.
	LifecycleLeaseAcquired Lifecycle = "lease_acquired"
	// LifecycleLeaseLost: this process stopped running the connection
	// because it could not renew its lease. Data: reason.
	LifecycleLeaseLost Lifecycle = "lease_lost"
	// LifecyclePayloadOffloaded: an inbound event was too large for one
	// message and its payload was offloaded (see [DataRef]). Data:
	// event_id, subject, size, limit, bucket, object; never the payload.
	LifecyclePayloadOffloaded Lifecycle = "payload_offloaded"
	// LifecycleGapPossible: a room's socket was redialled on a platform
	// without replay; frames sent meanwhile may be lost. Data: reason, down_ms.
	LifecycleGapPossible Lifecycle = "gap_possible"
	// LifecycleConversationEnded: the platform's agent ended a room's
	// conversation (max turns, a new topic). Data: reason, the frame.
	LifecycleConversationEnded Lifecycle = "conversation_ended"
	// LifecycleSessionEnded: the platform ended a room's session (owner,
	// inactivity, message cap); the connector detached it. Data: reason.
	LifecycleSessionEnded Lifecycle = "session_ended"
	// LifecycleReplyTimeout: the platform gave up waiting for its agent's
	// reply in a room. Data: reason, text.
	LifecycleReplyTimeout Lifecycle = "reply_timeout"
	// LifecycleSessionReplaced: the platform refused a session the bridge
	// held (token expired, session unknown) and the bridge opened a new
	// one in its place. Room: the old session. Data: old_session_id,
	// new_session_id, reason.
	LifecycleSessionReplaced Lifecycle = "session_replaced"
)

// LifecycleInfo describes one lifecycle event for documentation.
type LifecycleInfo struct {
	Name        Lifecycle
	Description string // one line
}

// Lifecycles lists every lifecycle event the bridge publishes, in the
// order a connection usually meets them.
func Lifecycles() []LifecycleInfo {
	return []LifecycleInfo{
		{LifecycleLeaseAcquired, "This process now runs the connection (data: owner, instance)."},
		{LifecycleConnected, "A session with the platform is up; reconnect is true when the connector reconnected by itself."},
		{LifecycleGapFilled, "The catch-up after a (re)connect finished (data: count of events found, rooms)."},
		{LifecycleDisconnected, "The session or its socket was lost (data: reason; permanent true when the platform refused it, with retry_in_ms until the next try)."},
		{LifecycleReconnecting, "The bridge reconnects after a wait (data: in_ms, attempt)."},
		{LifecycleSuperseded, "Another session of the same agent took over; the bridge takes it back after a cool-off (data: reason, retry_in_ms)."},
		{LifecycleLeaseLost, "This process stopped running the connection: it could not renew its lease (data: reason)."},
		{LifecyclePayloadOffloaded, "An event's payload was too large for one message and is kept by reference (data: event_id, subject, size, limit, bucket, object)."},
		{LifecycleGapPossible, "A room's socket was redialled on a platform without replay: frames sent meanwhile may be lost (data: reason, down_ms)."},
		{LifecycleConversationEnded, "The platform's agent ended a room's conversation (data: reason, frame)."},
		{LifecycleSessionEnded, "The platform ended a room's session and the connector detached it (data: reason)."},
		{LifecycleReplyTimeout, "The platform gave up waiting for its agent's reply in a room (data: reason, text)."},
		{LifecycleSessionReplaced, "A session the platform refused (expired token, unknown session) was replaced by a new one (room: the old session; data: old_session_id, new_session_id, reason)."},
	}
}

// IsLifecycle reports whether name is one of [Lifecycles].
func IsLifecycle(name string) bool {
	for _, l := range Lifecycles() {
		if string(l.Name) == name {
			return true
		}
	}
	return false
}
