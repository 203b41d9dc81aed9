package subjects

// The tables below describe the contract for its readers: the generator in
// internal/gen renders them into docs/contract.md, README.md and
// docs/asyncapi.yaml, and the tests check that they list every constant of
// this package, so the documents cannot drift from the code.

// KindInfo describes one subject kind.
type KindInfo struct {
	Kind      Kind
	Direction string // who publishes, who reads
	Transport string // how the messages travel (stream names for the default prefix)
	What      string // one line
}

// Kinds lists every subject kind, in the order a reader meets them.
func Kinds() []KindInfo {
	events := "JetStream stream " + StreamName(DefaultPrefix, StreamEvents)
	return []KindInfo{
		{KindEvent, "platform → workers", events,
			"Every platform event, in the platform's order per room, stored once per event id."},
		{KindSys, "bridge → workers, operators", events,
			"A connection's lifecycle: its lease, its sessions, catch-up, offloaded payloads."},
		{KindCommand, "workers → platform", "JetStream stream " + StreamName(DefaultPrefix, StreamCommands),
			"Durable commands: stored, then executed per room in stream order, each command id at most once."},
		{KindResult, "bridge → workers", "core NATS",
			"The result of each executed command, also sent to the command's Bridge-Reply-To."},
		{KindRPC, "workers → platform, request–reply", "core NATS",
			"A command run while the caller waits, answered with its result; not stored."},
		{KindWork, "bridge → a worker queue group", "core NATS request, one or more replies",
			"Managed dispatch: each event a dispatch rule matches, as a request."},
		{KindDLQ, "bridge → operators", "JetStream stream " + StreamName(DefaultPrefix, StreamDLQ),
			"Dead letters: commands and dispatched events given up on, the reason in headers."},
	}
}

// Pattern is the kind's subject with a placeholder for each part:
// P.evt.<platform>.<conn>.<room>.<event>.
func (k Kind) Pattern() string {
	name := "<command>"
	switch k {
	case KindEvent, KindSys, KindWork:
		name = "<event>"
	case KindDLQ:
		name = "<command or event>"
	}
	room := ""
	if k.HasRoom() {
		room = "<room>."
	}
	return "P." + string(k) + ".<platform>.<conn>." + room + name
}

// HeaderInfo describes one message header of the contract.
type HeaderInfo struct {
	Name string
	On   string // the messages that carry it
	What string // one line
}

// Headers lists every header the bridge sets or reads.
func Headers() []HeaderInfo {
	return []HeaderInfo{
		{HeaderMsgID, "events, commands, RPC requests, work requests, dead letters",
			"On an event: its id (JetStream stores one event per id within the duplicate window). On a command or RPC request: your idempotency key, executed at most once. On a work request: the event id. On a dead letter: derived from the source subject and the original id."},
		{HeaderContentType, "events, work requests, results",
			ContentTypeCloudEvents + " on events and work requests; application/json on results."},
		{HeaderReplyTo, "commands (set by the worker)",
			"A subject that receives the command's result too: under P.res.<platform>.<conn>., _INBOX_<conn>. or _INBOX.; any other is ignored with a warning."},
		{HeaderAttempt, "work requests", "The attempt number, 1 for the first."},
		{HeaderTraceParent, "events, work requests; read on commands", "W3C trace context, set only with tracing on (config [tracing]): the event's trace, continued by managed dispatch on its work request. A command that carries one continues that trace, and so do the platform calls it makes."},
		{HeaderTraceState, "events, work requests; read on commands", "W3C trace state, beside traceparent when the trace has one."},
		{HeaderError, "dead letters", "Why the message was given up on, one line of at most 1 KiB."},
		{HeaderStatus, "dead letters", "The platform's HTTP status, 0 when there was none."},
		{HeaderAttempts, "dead letters", "How many attempts were made."},
		{HeaderSourceSubject, "dead letters", "The subject the message was on: a P.cmd… command or a dispatched P.evt… event."},
		{HeaderDataRef, "dead letters too large for one message", "The body's reference, " + DataRefScheme + "://<bucket>/<object>; the dead letter's own body is empty."},
		{HeaderDataBucket, "dead letters too large for one message", "The object store bucket holding the body."},
		{HeaderDataObject, "dead letters too large for one message", "The object's name: the body's SHA-256, hex."},
		{HeaderDataSize, "dead letters too large for one message", "The body's size in bytes."},
		{HeaderDataSHA256, "dead letters too large for one message", "The body's SHA-256, lower-case hex."},
	}
}

// CodeInfo describes one error code the bridge produces.
type CodeInfo struct {
	Code      string
	Retryable string // what error.retryable says
	What      string // one line
}

// ErrorCodes lists every error code the bridge itself puts in a
// [Result]; any other code is the platform's own.
func ErrorCodes() []CodeInfo {
	return []CodeInfo{
		{ErrCodeBadRequest, "false",
			"The command is malformed: body not a JSON object, unknown command, missing, misspelt or wrong-typed argument, bad room token. The message names the field; status is 400."},
		{ErrCodePlatform, "false",
			"The platform refused the command without an error code of its own; status is its HTTP status."},
		{ErrCodeUnavailable, "true",
			"Transient failures outlasted the retries, an RPC found every worker busy, the bridge stopped before the command ended, or the platform asked the room to rest without a code of its own (then with retry_after_ms)."},
		{ErrCodeTooLarge, "false",
			"The command ran, but its result does not fit in one NATS message; status is the platform's. Ask for less (a smaller page) and page through."},
		{ErrCodeUnknownOutcome, "false",
			"The call may have reached the platform and its answer was lost; the bridge never sends it again, since it could act twice. Look on the platform before you send it again."},
	}
}

// StoreInfo describes one JetStream stream or bucket the bridge keeps.
type StoreInfo struct {
	Base string // the name after "<PREFIX>_"
	Type string // "stream", "KV bucket" or "object store"
	What string // what it holds
	Kept string // how long
}

// Name is the store's name under prefix: BRIDGE_EVENTS for the default
// prefix, ACME_EVENTS for "acme" (a per-connection store keeps <conn>).
func (s StoreInfo) Name(prefix string) string { return StreamName(prefix, s.Base) }

// Stores lists the streams and buckets the bridge creates under its
// prefix. Workers read the streams; the buckets are the bridge's own.
func Stores() []StoreInfo {
	return []StoreInfo{
		{StreamEvents, "stream", "P.evt… and P.sys…", "nats.events_max_age (default 168h)"},
		{StreamCommands, "stream", "P.cmd.<platform>.<conn>.> of every configured connection, enabled or not; above 1,000 connections P.cmd.<platform>.> of each of their platforms", "nats.commands_max_age (default 24h)"},
		{StreamDLQ, "stream", "P.dlq…", "nats.dlq_max_age (default 720h)"},
		{"PAYLOADS_<conn>", "object store", "one connection's payloads too large for one message, named by their SHA-256", "the longer of nats.events_max_age and nats.dlq_max_age"},
		{"EXECUTED", "KV bucket", "each executed command id with its result, and which platform record each command created", "nats.duplicate_window (default 20m)"},
		{"PUBLISHED", "KV bucket", "the id of every event stored in the events stream: in batches, one key per burst of a connection's events of one room and minute of the platform's time, or one key per event without a platform time", "nats.events_max_age"},
		{"DISPATCHED", "KV bucket", "the events managed dispatch finished (processed or dead-lettered)", "nats.events_max_age"},
		{"DISPATCH_START", "KV bucket", "where each connection's dispatch rule started", "for good"},
		{"LEASES", "KV bucket", "which bridge process runs each connection", "lease.ttl (default 15s) after the holder's last renewal"},
		{"MEMBERS", "KV bucket", "the running bridge processes, one key each, which connections are assigned by", "lease.ttl after the process's last heartbeat"},
		{"STATE", "KV bucket", "the connectors' own state (tokens, cursors, sessions), keys <conn>.<key>; where each idle connection's command consumer stopped, keys Commands.<conn>", "for good"},
	}
}
