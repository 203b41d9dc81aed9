package natsbus

import (
	"context"
	"fmt"
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
}

// StreamConfigs returns the configurations of BRIDGE_EVENTS, BRIDGE_COMMANDS
// and BRIDGE_DLQ (names follow the prefix).
func StreamConfigs(o StreamOptions) []jetstream.StreamConfig {
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
	mk := func(base, desc string, maxAge time.Duration, subs ...string) jetstream.StreamConfig {
		return jetstream.StreamConfig{
			Name:        subjects.StreamName(o.Prefix, base),
			Description: desc,
			Subjects:    subs,
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    o.Replicas,
			Duplicates:  o.DuplicateWindow,
			MaxAge:      maxAge,
			Discard:     jetstream.DiscardOld,
		}
	}
	p := o.Prefix
	return []jetstream.StreamConfig{
		mk(subjects.StreamEvents, "bridge: platform events and lifecycle events", o.EventsMaxAge,
			subjects.Filter(p, subjects.KindEvent, "", ""), subjects.Filter(p, subjects.KindSys, "", "")),
		mk(subjects.StreamCommands, "bridge: worker commands to platforms", o.CommandsMaxAge,
			subjects.Filter(p, subjects.KindCommand, "", "")),
		mk(subjects.StreamDLQ, "bridge: dead letters with the reason in headers", o.DLQMaxAge,
			subjects.Filter(p, subjects.KindDLQ, "", "")),
	}
}

// EnsureStreams creates or updates the contract's streams; it is idempotent.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, o StreamOptions) error {
	for _, cfg := range StreamConfigs(o) {
		if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("nats: stream %s: %w", cfg.Name, err)
		}
	}
	return nil
}
