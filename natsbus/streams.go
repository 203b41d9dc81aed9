package natsbus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bridgeworks/bridge/subjects"
)

// StreamOptions size the contract's streams.
type StreamOptions struct {
	Prefix          string        // subject prefix, default "bridge"
	Replicas        int           // default 1
	DuplicateWindow time.Duration // default 20m
	EventsMaxAge    time.Duration // default 168h
	CommandsMaxAge  time.Duration // default 24h
	DLQMaxAge       time.Duration // default 720h

	// Connections are the connections whose commands BRIDGE_COMMANDS
	// stores: one subject P.cmd.<platform>.<name>.> each, so JetStream
	// refuses at once a command for any other connection or platform (the
	// publisher gets no PubAck) instead of storing one nobody executes.
	// Above MaxConnectionSubjects connections, one subject per platform,
	// P.cmd.<platform>.>, instead (see there). Nil stores every P.cmd…
	// subject (tools and tests that run no bridge); empty stores none
	// (JetStream then gives the stream its own name as its only subject,
	// which is under no prefix).
	Connections []StreamConn

	// EventConsumers is how many consumers the bridge itself makes on
	// BRIDGE_EVENTS (one per managed-dispatch rule); BRIDGE_COMMANDS gets
	// one per connection. See [consumerLimit].
	EventConsumers int
}

// consumerHeadroom is what a stream's consumer limit leaves, beyond the
// bridge's own consumers, for the consumers of workers and tools: the
// default limit of a stream on nats-server 2.12 and later.
const consumerHeadroom = 1000

// consumerLimit is the MaxConsumers of a stream on which the bridge makes
// own consumers: 0 (the server's default, 1,000 per stream since
// nats-server 2.12) when it makes none, else own plus consumerHeadroom,
// capped at the account's limit (acct, 0 when it has none) so the stream
// stays valid there. Without it a bridge serving more than 1,000
// connections could not create their command consumers.
func consumerLimit(own, acct int) int {
	if own <= 0 {
		return 0
	}
	if n := own + consumerHeadroom; acct <= 0 || n < acct {
		return n
	}
	return acct
}

// StreamConn names one connection served by the bridge: its platform's
// subject token and its name.
type StreamConn struct{ Platform, Name string }

// MaxConnectionSubjects is the most connections BRIDGE_COMMANDS lists one
// by one. The server checks a stream's subjects against each other on every
// create and update, a cost that grows with the square of their number:
// 0.1 s for 1,000 subjects, 10–15 s for 10,000 on a 2-core machine, during
// which the server's JetStream API answers nobody else. Above it the stream
// captures each platform's commands with one subject, and a command for a
// connection no configuration has is stored (and expires unexecuted after
// commands_max_age) instead of refused at publish.
const MaxConnectionSubjects = 1000

// commandSubjects is what BRIDGE_COMMANDS captures under o.
func commandSubjects(o StreamOptions) []string {
	if o.Connections == nil {
		return []string{subjects.Filter(o.Prefix, subjects.KindCommand, "", "")}
	}
	perPlatform := len(o.Connections) > MaxConnectionSubjects
	out := make([]string, 0, len(o.Connections))
	for _, c := range o.Connections {
		name := c.Name
		if perPlatform {
			name = ""
		}
		out = append(out, subjects.Filter(o.Prefix, subjects.KindCommand, c.Platform, name))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// StreamConfigs returns the configurations of BRIDGE_EVENTS, BRIDGE_COMMANDS
// and BRIDGE_DLQ (names follow the prefix).
func StreamConfigs(o StreamOptions) []jetstream.StreamConfig {
	return streamConfigs(o, 0)
}

// streamConfigs is StreamConfigs in an account whose consumer limit is acct
// (0 for none).
func streamConfigs(o StreamOptions, acct int) []jetstream.StreamConfig {
	if o.Prefix == "" {
		o.Prefix = subjects.DefaultPrefix
	}
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.DuplicateWindow == 0 {
		o.DuplicateWindow = 20 * time.Minute
	}
	if o.EventsMaxAge == 0 {
		o.EventsMaxAge = 168 * time.Hour
	}
	if o.CommandsMaxAge == 0 {
		o.CommandsMaxAge = 24 * time.Hour
	}
	if o.DLQMaxAge == 0 {
		o.DLQMaxAge = 720 * time.Hour
	}
	mk := func(base, desc string, maxAge time.Duration, own int, subs ...string) jetstream.StreamConfig {
		return jetstream.StreamConfig{
			Name:         subjects.StreamName(o.Prefix, base),
			Description:  desc,
			Subjects:     subs,
			Retention:    jetstream.LimitsPolicy,
			Storage:      jetstream.FileStorage,
			Replicas:     o.Replicas,
			Duplicates:   o.DuplicateWindow,
			MaxAge:       maxAge,
			Discard:      jetstream.DiscardOld,
			MaxConsumers: consumerLimit(own, acct),
		}
	}
	p := o.Prefix
	return []jetstream.StreamConfig{
		mk(subjects.StreamEvents, "bridge: platform events and lifecycle events", o.EventsMaxAge, o.EventConsumers,
			subjects.Filter(p, subjects.KindEvent, "", ""), subjects.Filter(p, subjects.KindSys, "", "")),
		mk(subjects.StreamCommands, "bridge: worker commands to platforms", o.CommandsMaxAge, len(o.Connections),
			commandSubjects(o)...),
		mk(subjects.StreamDLQ, "bridge: dead letters with the reason in headers", o.DLQMaxAge, 0,
			subjects.Filter(p, subjects.KindDLQ, "", "")),
	}
}

// accountConsumerLimit is the smallest consumer limit of the account (its
// own or one of its tiers), 0 when it has none. Asked only when a stream
// gets a limit of its own.
func accountConsumerLimit(ctx context.Context, js jetstream.JetStream, o StreamOptions) (int, error) {
	if len(o.Connections) == 0 && o.EventConsumers <= 0 {
		return 0, nil
	}
	ai, err := js.AccountInfo(ctx)
	if err != nil {
		return 0, fmt.Errorf("nats: account info: %w", err)
	}
	limit := max(ai.Limits.MaxConsumers, 0)
	for _, t := range ai.Tiers {
		if m := t.Limits.MaxConsumers; m > 0 && (limit == 0 || m < limit) {
			limit = m
		}
	}
	return limit, nil
}

// EnsureStreams creates or updates the contract's streams; it is idempotent.
// An update replaces the subjects of BRIDGE_COMMANDS with o's: see
// [DroppedCommandSubjects] to learn beforehand which ones go.
//
// A stream whose configuration already matches is left alone: the server
// checks a stream's subjects against each other on every create and update,
// which grows with the square of their number (up to MaxConnectionSubjects
// in BRIDGE_COMMANDS: 0.1 s for 1,000), so a restart with an unchanged
// configuration costs one stream info per stream. A create or update is
// given streamUpdateTimeout.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, o StreamOptions) error {
	acct, err := accountConsumerLimit(ctx, js, o)
	if err != nil {
		return err
	}
	for _, cfg := range streamConfigs(o, acct) {
		if st, err := js.Stream(ctx, cfg.Name); err == nil && sameStream(st.CachedInfo().Config, cfg) {
			continue
		}
		uctx, cancel := context.WithTimeout(ctx, streamUpdateTimeout)
		_, err := js.CreateOrUpdateStream(uctx, cfg)
		cancel()
		if err != nil {
			return fmt.Errorf("nats: stream %s: %w", cfg.Name, err)
		}
	}
	return nil
}

// streamUpdateTimeout bounds one stream create or update: the 5 s of any
// JetStream request, and time for the server's check of at most
// MaxConnectionSubjects subjects against each other. A request lost while a
// cluster elects its leaders is retried by the caller that soon.
const streamUpdateTimeout = 10 * time.Second

// sameStream reports whether have (a stream's configuration as the server
// returns it) already has everything want sets.
func sameStream(have, want jetstream.StreamConfig) bool {
	return have.Description == want.Description && have.Retention == want.Retention &&
		have.Storage == want.Storage && have.Replicas == want.Replicas &&
		have.Duplicates == want.Duplicates && have.MaxAge == want.MaxAge && have.Discard == want.Discard &&
		max(have.MaxConsumers, 0) == max(want.MaxConsumers, 0) && sameSet(have.Subjects, want.Subjects)
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	in := make(map[string]bool, len(a))
	for _, s := range a {
		in[s] = true
	}
	for _, s := range b {
		if !in[s] {
			return false
		}
	}
	return true
}

// DroppedCommandSubjects returns the subjects the existing BRIDGE_COMMANDS
// captures that [EnsureStreams] with o would stop capturing: connections an
// earlier configuration served and o does not. None when the stream does not
// exist yet.
func DroppedCommandSubjects(ctx context.Context, js jetstream.JetStream, o StreamOptions) ([]string, error) {
	if o.Prefix == "" {
		o.Prefix = subjects.DefaultPrefix
	}
	name := subjects.StreamName(o.Prefix, subjects.StreamCommands)
	st, err := js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("nats: stream %s: %w", name, err)
	}
	keep := commandSubjects(o)
	var dropped []string
	for _, s := range st.CachedInfo().Config.Subjects {
		if s != name && !slices.ContainsFunc(keep, func(k string) bool { return covers(k, s) }) {
			dropped = append(dropped, s)
		}
	}
	return dropped, nil
}

// covers reports whether every subject filter s matches is matched by
// filter k too.
func covers(k, s string) bool {
	kt, st := strings.Split(k, "."), strings.Split(s, ".")
	for i, t := range kt {
		if t == ">" {
			return len(st) > i
		}
		if i >= len(st) || st[i] == ">" || (t != "*" && t != st[i]) {
			return false
		}
	}
	return len(kt) == len(st)
}
