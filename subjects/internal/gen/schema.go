package main

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/bridgeworks/bridge/subjects"
)

// doc is what reflection cannot see: a field's description and any schema
// keywords beyond its Go type (enum, pattern, format, examples).
type doc struct {
	text  string
	extra obj
}

// docs describes every JSON field of the contract's types, keyed
// "Type.json_name", and each type under "Type". The generator fails on a
// field without an entry (or an entry without a field), so a change to the
// subjects types cannot reach the docs undescribed.
var docs = map[string]doc{
	"Event":             {text: "A CloudEvents 1.0 event in structured mode: the body of every message on P.evt…, P.sys… and P.work… (Content-Type " + subjects.ContentTypeCloudEvents + ")."},
	"Event.specversion": {text: "CloudEvents version.", extra: o("const", subjects.SpecVersion)},
	"Event.id": {text: "Stable id: the same platform event always gets the same id (\"<platform>:<conn>:<platform event id or hash>\"). Also sent as Nats-Msg-Id. Use it as your idempotency key.",
		extra: o("examples", list{subjects.EventID("band", "support-bot", "9b0c6a1e-5f3e-4c1b-9a43-0d7f1c2b8e11")})},
	"Event.source":          {text: "\"bridge/<platform>/<conn>\".", extra: o("examples", list{"bridge/band/support-bot"})},
	"Event.type":            {text: "\"<platform>.<event>\".", extra: o("examples", list{"band.message_created"})},
	"Event.subject":         {text: "The room id as the platform wrote it (unescaped); absent for agent-level events."},
	"Event.time":            {text: "When the platform says the event happened; if it does not say, when the bridge got it (UTC)."},
	"Event.datacontenttype": {text: "Content type of data.", extra: o("const", "application/json")},
	"Event.platform":        {text: "Platform name, as in the subject.", extra: o("pattern", "^[a-z0-9]{1,32}$", "examples", list{"band"})},
	"Event.connection":      {text: "Connection name from the bridge config, as in the subject.", extra: o("pattern", "^[a-z0-9_-]{1,64}$", "examples", list{"support-bot"})},
	"Event.room":            {text: "The room id as the platform wrote it (unescaped); absent for agent-level events."},
	"Event.transient":       {text: "CloudEvents extension: true on events that only matter while fresh (typing, thinking); absent otherwise. A worker may drop them."},
	"Event.data":            {text: "The platform's payload as received, unchanged; fields the bridge does not know are kept. On a lifecycle event, the bridge's own data (see the lifecycle list). Absent when the payload was too large for one NATS message: then dataref and the data* attributes say where it is kept."},
	"Event.dataref": {text: "CloudEvents dataref extension: set instead of data when the payload was larger than NATS's max_payload. \"" + subjects.DataRefScheme + "://<bucket>/<object>\": an object in the connection's JetStream object store bucket.",
		extra: o("format", "uri", "examples", list{subjects.DataRefScheme + "://" + subjects.PayloadBucket("bridge", "support-bot") + "/3a7bd3e2360a3d29eea436fcfb7e44c735d117c42d1c1835420b6b9942dd4f1b"})},
	"Event.databucket": {text: "With dataref: the object store bucket, \"<PREFIX>_PAYLOADS_<conn>\".", extra: o("examples", list{subjects.PayloadBucket("bridge", "support-bot")})},
	"Event.dataobject": {text: "With dataref: the object's name in the bucket (the payload's SHA-256, hex)."},
	"Event.datasize":   {text: "With dataref: the payload's size in bytes."},
	"Event.datasha256": {text: "With dataref: the payload's SHA-256, lower-case hex; check it after fetching.", extra: o("pattern", "^[0-9a-f]{64}$")},
	"Event.commandid":  {text: "CloudEvents extension, set on the events a streaming command emits while it runs (text deltas of a reply): the command's id. They are published before the command's result."},
	"Event.seq":        {text: "With commandid: the event's index among the command's events, from 0. A re-executed command stores each index once (its Nats-Msg-Id is derived from the command id and the index).", extra: o("minimum", 0)},

	"Result":            {text: "The outcome of one executed command: published on P.res…, on the command's Bridge-Reply-To subject, and as the reply to a P.rpc… request."},
	"Result.command_id": {text: "The command's Nats-Msg-Id, or an id the bridge generated."},
	"Result.command":    {text: "The command name.", extra: o("examples", list{"send_message"})},
	"Result.ok":         {text: "Whether the platform accepted the command."},
	"Result.status":     {text: "The platform's HTTP status when there was a call (200 when the platform gave none); 400 with bad_request."},
	"Result.data":       {text: "The platform's response data (reads return what they read)."},
	"Result.error":      {text: "Why the command failed; present when ok is false."},
	"Result.attempts":   {text: "How many times the bridge tried the command: 1 for bad input, 0 for an RPC refused because the bridge was busy."},

	"Error": {text: "Why a command failed."},
	"Error.code": {text: "The platform's error code where it has one, otherwise one of the bridge's codes.",
		extra: o("examples", errorCodeExamples())},
	"Error.message":        {text: "Human-readable reason; for bad_request it names the field."},
	"Error.retryable":      {text: "Whether the same command may succeed later: true for transient failures the bridge has already retried, and for a room asked to rest (retry_after_ms)."},
	"Error.retry_after_ms": {text: "The rest the platform asked the room to take before its next command, in milliseconds (a cooldown); the bridge holds the room's later commands that long. Absent when none was asked.", extra: o("minimum", 0)},

	"WorkReply": {text: "One reply of a managed-dispatch worker to a P.work… request. Reply once or several times: processing (optional, restarts the deadline), then processed or failed."},
	"WorkReply.status": {text: "processing restarts the deadline; processed runs commands in order and marks the message processed; failed ends the attempt.",
		extra: o("enum", list{subjects.WorkProcessing, subjects.WorkProcessed, subjects.WorkFailed})},
	"WorkReply.commands": {text: "Commands to run, in order, in the event's room, before the message is marked processed. Only with status processed."},
	"WorkReply.error":    {text: "Why the attempt failed (status failed)."},
	"WorkReply.retry":    {text: "With status failed: try again with backoff (up to the rule's max_attempts) instead of failing the message now."},

	"CommandSpec":         {text: "One command inside a processed reply."},
	"CommandSpec.command": {text: "Command name, as in P.cmd…", extra: o("examples", list{"send_message"})},
	"CommandSpec.args":    {text: "The command's arguments, as published on P.cmd…", extra: o("type", "object")},
}

// errorCodeExamples are the bridge's codes (subjects.ErrorCodes) and one of
// Band's own.
func errorCodeExamples() list {
	var l list
	for _, c := range subjects.ErrorCodes() {
		l = append(l, c.Code)
	}
	return append(l, "mentions_required")
}

// schemaFile is the JSON Schema (draft-07, which AsyncAPI schemas extend)
// of one subjects type, with the types it uses under definitions.
func schemaFile(v any) (obj, error) {
	t := reflect.TypeOf(v)
	defs := map[string]obj{}
	root, err := structSchema(t, defs)
	if err != nil {
		return nil, err
	}
	out := append(o("$schema", "http://json-schema.org/draft-07/schema#", "title", t.Name()), root...)
	if len(defs) > 0 {
		names := make([]string, 0, len(defs))
		for n := range defs {
			names = append(names, n)
		}
		slices.Sort(names)
		var d obj
		for _, n := range names {
			d = append(d, field{n, defs[n]})
		}
		out = append(out, field{"definitions", d})
	}
	return out, nil
}

func structSchema(t reflect.Type, defs map[string]obj) (obj, error) {
	td, ok := docs[t.Name()]
	if !ok {
		return nil, fmt.Errorf("type %s has no entry in docs", t.Name())
	}
	var props obj
	var required list
	for f := range t.Fields() {
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" || name == "-" || !f.IsExported() {
			continue
		}
		key := t.Name() + "." + name
		fd, ok := docs[key]
		if !ok {
			return nil, fmt.Errorf("field %s (json %q) has no entry in docs", t.Name()+"."+f.Name, name)
		}
		s, err := typeSchema(f.Type, defs)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
		s = merge(append(o("description", fd.text), s...), fd.extra)
		props = append(props, field{name, s})
		if !strings.Contains(opts, "omitempty") {
			required = append(required, name)
		}
	}
	out := o("description", td.text, "type", "object", "properties", props)
	if len(required) > 0 {
		out = append(out, field{"required", required})
	}
	return out, nil
}

var (
	timeType = reflect.TypeFor[time.Time]()
	rawType  = reflect.TypeFor[json.RawMessage]()
)

func typeSchema(t reflect.Type, defs map[string]obj) (obj, error) {
	switch {
	case t == timeType:
		return o("type", "string", "format", "date-time"), nil
	case t == rawType:
		return obj{}, nil // any JSON value
	}
	switch t.Kind() {
	case reflect.String:
		return o("type", "string"), nil
	case reflect.Bool:
		return o("type", "boolean"), nil
	case reflect.Int, reflect.Int32, reflect.Int64:
		return o("type", "integer"), nil
	case reflect.Pointer:
		return typeSchema(t.Elem(), defs)
	case reflect.Slice:
		items, err := typeSchema(t.Elem(), defs)
		if err != nil {
			return nil, err
		}
		return o("type", "array", "items", items), nil
	case reflect.Struct:
		if _, ok := defs[t.Name()]; !ok {
			defs[t.Name()] = nil // reserve: no endless recursion
			s, err := structSchema(t, defs)
			if err != nil {
				return nil, err
			}
			defs[t.Name()] = s
		}
		return o("$ref", "#/definitions/"+t.Name()), nil
	}
	return nil, fmt.Errorf("no schema for Go type %s", t)
}

// merge sets extra's keys on s, replacing keys s already has.
func merge(s, extra obj) obj {
	for _, e := range extra {
		i := slices.IndexFunc(s, func(f field) bool { return f.key == e.key })
		if i >= 0 {
			s[i].val = e.val
		} else {
			s = append(s, e)
		}
	}
	return s
}

// checkDocs reports entries in docs that name no type or field.
func checkDocs(types ...any) error {
	known := map[string]bool{}
	var walk func(reflect.Type)
	walk = func(t reflect.Type) {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || t == timeType || known[t.Name()] {
			return
		}
		known[t.Name()] = true
		for f := range t.Fields() {
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			known[t.Name()+"."+name] = true
			walk(f.Type)
		}
	}
	for _, v := range types {
		walk(reflect.TypeOf(v))
	}
	for k := range docs {
		if !known[k] {
			return fmt.Errorf("docs has an entry for %s, which the subjects types no longer have", k)
		}
	}
	return nil
}
