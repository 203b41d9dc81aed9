package main

import (
	"strings"

	"github.com/bridgeworks/bridge/subjects"
)

// channel is one subject kind as an AsyncAPI channel, with the operation a
// worker performs on it. Its description is the kind's line in
// subjects.Kinds, then more.
type channel struct {
	kind        subjects.Kind
	name        string // last token's parameter: event or command
	title       string
	description string   // after subjects.Kinds' line
	messages    []string // keys of components.messages (P.cmd…: one per platform command)
	op          string   // operation id
	action      string   // "send" or "receive", from the worker's side
	summary     string
	reply       string // reply channel id, for request-reply
}

// lifecycleDescription lists subjects.Lifecycles, so the document names
// exactly the lifecycle events the bridge publishes.
func lifecycleDescription() string {
	var b strings.Builder
	b.WriteString("The envelope's room is set when the event concerns one room (a session); its data says more. Events:")
	for i, l := range subjects.Lifecycles() {
		if i > 0 {
			b.WriteString(";")
		}
		b.WriteString(" " + string(l.Name) + ": " + strings.TrimSuffix(l.Description, "."))
	}
	b.WriteString(".")
	return b.String()
}

func stream(base string) string { return subjects.StreamName(subjects.DefaultPrefix, base) }

// channels lists every subject kind of the contract (the test checks that
// it matches the Kind constants of package subjects).
var channels = []channel{
	{kind: subjects.KindEvent, name: "event", title: "Platform events",
		description: "Deduplicated by Nats-Msg-Id. Consume with a durable consumer; ack after you have acted.",
		messages:    []string{"event"}, op: "receiveEvent", action: "receive", summary: "Consume platform events from JetStream."},
	{kind: subjects.KindSys, name: "event", title: "Lifecycle events",
		description: lifecycleDescription(),
		messages:    []string{"event"}, op: "receiveLifecycleEvent", action: "receive", summary: "Watch a connection's lifecycle."},
	{kind: subjects.KindCommand, name: "command", title: "Durable commands",
		description: "Publish with JetStream: the PubAck means stored. Transient failures are retried; a command for a connection the bridge does not serve gets no PubAck.",
		op:          "sendCommand", action: "send", summary: "Publish a durable command."},
	{kind: subjects.KindResult, name: "command", title: "Command results",
		description: "Subscribe before you publish the command to see its result.",
		messages:    []string{"result"}, op: "receiveResult", action: "receive", summary: "Learn the outcome of durable commands."},
	{kind: subjects.KindRPC, name: "command", title: "Synchronous commands",
		description: "With no bridge running the caller gets no responders. A Nats-Msg-Id makes a retried request execute once. Use it for reads.",
		messages:    []string{"rpcRequest"}, op: "requestCommand", action: "send", summary: "Run a command and wait for its result.", reply: "rpcReply"},
	{kind: subjects.KindWork, name: "event", title: "Managed dispatch",
		description: "Subscribe with a queue group; one room's messages come in order. Reply to the request's reply subject, once or several times.",
		messages:    []string{"workRequest"}, op: "answerWork", action: "receive", summary: "Answer managed-dispatch requests (subscribe with a queue group).", reply: "workReply"},
	{kind: subjects.KindDLQ, name: "name", title: "Dead letters",
		description: "The original body and headers (less Nats-* ones), plus the reason headers.",
		messages:    []string{"deadLetter"}, op: "receiveDeadLetter", action: "receive", summary: "Inspect or replay what failed."},
}

// kindLine is the kind's line in subjects.Kinds.
func kindLine(k subjects.Kind) string {
	for _, ki := range subjects.Kinds() {
		if ki.Kind == k {
			return ki.What + " Transport: " + ki.Transport + "."
		}
	}
	return ""
}

// replies are the channels of request-reply answers: NATS inboxes, so their
// address is not known in advance.
var replies = []struct{ id, description, message string }{
	{"rpcReply", "The reply subject of a P.rpc… request (the requester's inbox).", "result"},
	{"workReply", "The reply subject of a P.work… request (the bridge's inbox).", "workReply"},
}

// address is a kind's subject with a parameter in place of each part.
func address(k subjects.Kind, name string) string {
	parts := []string{"{prefix}", string(k), "{platform}", "{conn}"}
	if k.HasRoom() {
		parts = append(parts, "{room}")
	}
	return strings.Join(append(parts, "{"+name+"}"), ".")
}

func ref(path string) obj { return o("$ref", path) }

// headers is the headers object of a message, described by
// subjects.Headers.
func headers(names ...string) obj {
	desc := map[string]string{}
	for _, h := range subjects.Headers() {
		desc[h.Name] = h.What
	}
	var props obj
	for _, n := range names {
		props = append(props, field{n, o("type", "string", "description", desc[n])})
	}
	return o("type", "object", "properties", props)
}

// asyncAPI is the AsyncAPI 3.0 document of the contract, from the worker's
// side: it receives events, sends commands. Durable commands are one
// message per platform command, whose payload is the schema of its
// arguments.
func asyncAPI(cmds []platformCommand) obj {
	var cmdIDs []string
	for _, c := range cmds {
		cmdIDs = append(cmdIDs, c.id())
	}
	var chans, ops obj
	for _, c := range channels {
		if c.kind == subjects.KindCommand {
			c.messages = cmdIDs
		}
		params := o("prefix", ref("#/components/parameters/prefix"), "platform", ref("#/components/parameters/platform"),
			"conn", ref("#/components/parameters/conn"))
		if c.kind.HasRoom() {
			params = append(params, field{"room", ref("#/components/parameters/room")})
		}
		params = append(params, field{c.name, ref("#/components/parameters/" + c.name)})
		var msgs obj
		var opMsgs list
		for _, m := range c.messages {
			msgs = append(msgs, field{m, ref("#/components/messages/" + m)})
			opMsgs = append(opMsgs, ref("#/channels/"+string(c.kind)+"/messages/"+m))
		}
		chans = append(chans, field{string(c.kind), o(
			"address", address(c.kind, c.name), "title", c.title, "description", kindLine(c.kind)+" "+c.description,
			"parameters", params, "messages", msgs)})
		op := o("action", c.action, "channel", ref("#/channels/"+string(c.kind)), "summary", c.summary, "messages", opMsgs)
		if c.reply != "" {
			op = append(op, field{"reply", o("channel", ref("#/channels/"+c.reply))})
		}
		ops = append(ops, field{c.op, op})
	}
	for _, r := range replies {
		chans = append(chans, field{r.id, o("address", nil, "description", r.description,
			"messages", o(r.message, ref("#/components/messages/"+r.message)))})
	}

	messages := o(
		"event", o("name", "event", "title", "Event", "contentType", subjects.ContentTypeCloudEvents,
			"summary", "A platform or lifecycle event in a CloudEvents envelope.",
			"headers", headers(subjects.HeaderContentType, subjects.HeaderMsgID),
			"payload", ref("./schemas/event.schema.json")),
		"workRequest", o("name", "workRequest", "title", "Work request", "contentType", subjects.ContentTypeCloudEvents,
			"summary", "The event to handle, as on P.evt…; the bridge waits for replies on the request's reply subject.",
			"headers", headers(subjects.HeaderContentType, subjects.HeaderMsgID, subjects.HeaderAttempt),
			"payload", ref("./schemas/event.schema.json")),
		"workReply", o("name", "workReply", "title", "Work reply", "contentType", "application/json",
			"summary", "processing, processed with commands, or failed with retry.",
			"payload", ref("./schemas/work-reply.schema.json")),
		"rpcRequest", o("name", "rpcRequest", "title", "RPC request", "contentType", "application/json",
			"summary", "The command's arguments (the schema of its message on P.cmd…), plus \"room\" (the room id, unescaped) where the command needs one.",
			"headers", headers(subjects.HeaderMsgID),
			"payload", o("type", "object", "properties", o("room", o("type", "string", "description", "Room id as the platform writes it.")))),
		"result", o("name", "result", "title", "Result", "contentType", "application/json",
			"summary", "The outcome of one executed command.",
			"headers", headers(subjects.HeaderContentType),
			"payload", ref("./schemas/result.schema.json")),
		"deadLetter", o("name", "deadLetter", "title", "Dead letter",
			"summary", "The original body (command arguments or event) with the reason in headers; a body too large for one message is kept by reference (Bridge-Data-* headers) and the body is empty.",
			"headers", headers(subjects.HeaderMsgID, subjects.HeaderError, subjects.HeaderStatus, subjects.HeaderAttempts, subjects.HeaderSourceSubject,
				subjects.HeaderDataRef, subjects.HeaderDataBucket, subjects.HeaderDataObject, subjects.HeaderDataSize, subjects.HeaderDataSHA256),
			"payload", obj{}),
	)
	for _, c := range cmds {
		messages = append(messages, field{c.id(), commandMessage(c)})
	}
	params := o(
		"prefix", o("description", "Subject prefix (config nats.prefix); streams are <PREFIX>_EVENTS etc. when it is not bridge.", "default", subjects.DefaultPrefix),
		"platform", o("description", "Platform name.", "examples", list{"band"}),
		"conn", o("description", "Connection name from the bridge config: [a-z0-9_-]{1,64}.", "examples", list{"support-bot"}),
		"room", o("description", "The platform's room id as one token: a byte outside [A-Za-z0-9_-] turns into ~ and its upper-case hexadecimal value (a.b → a~2Eb); _ means no room, and a room id that is literally _ is ~5F.",
			"examples", list{subjects.EscapeToken("6f1d2c3b-0a9e-4f5d-8c7b-1a2b3c4d5e6f"), subjects.EscapeToken("a.b"), subjects.NoRoom}),
		"event", o("description", "Event name, lower-case snake case; unknown platform events are forwarded with unsafe bytes escaped as for rooms.", "examples", list{"message_created", "room_added", "connected"}),
		"command", o("description", "Command name, lower-case snake case.", "examples", list{"send_message", "mark_processed", "me"}),
		"name", o("description", "The command or event name of the message that was given up on.", "examples", list{"send_message", "message_created"}),
	)
	return o(
		"asyncapi", "3.0.0",
		"info", o("title", "Bridge worker contract", "version", "1",
			"description", "What a worker service sees of the bridge between AI-agent chat platforms and NATS, from the worker's side: it receives events and sends commands. Generated from package subjects by go generate; docs/workers.md explains it."),
		"defaultContentType", "application/json",
		"servers", o("local", o("host", "127.0.0.1:4222", "protocol", "nats", "description", "The bridge's embedded NATS server (or your cluster).")),
		"channels", chans,
		"operations", ops,
		"components", o("parameters", params, "messages", messages,
			"schemas", o("commandHeaders", headers(subjects.HeaderMsgID, subjects.HeaderReplyTo))),
	)
}
