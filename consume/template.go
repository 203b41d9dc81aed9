package consume

import (
	"context"
	"errors"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/bridgeworks/bridge/natsbus"
)

// Template is the [Options] many engines share (the command executors of
// a process's connections, say): each engine started from it keeps a
// pointer to one checked copy and only its own [Spec], where [Start]
// keeps a copy of the whole Options (about 0.6 KiB, the consumer's
// configuration included) per engine. Its Options' per-engine fields
// (Consumer's Durable, Description and filters, RoomOf, Doorbell, Setup,
// Ready, Release and Log) are ignored: each engine's come from its Spec.
type Template struct{ o Options }

// NewTemplate checks o's shared fields and fills in their defaults.
func NewTemplate(o Options) (*Template, error) {
	if err := o.setShared(); err != nil {
		return nil, err
	}
	return &Template{o: o}, nil
}

// Start starts an engine with the template's options and sp, as [Start]
// does with the whole of them.
func (t *Template) Start(ctx context.Context, sp Spec, h Handler) (*Engine, error) {
	if err := sp.check(t.o.Mux); err != nil {
		return nil, err
	}
	return start(ctx, &t.o, sp, h), nil
}

// Spec is what tells one engine of a [Template] apart; each field is the
// Options field of the same name (Durable, Description and the filters
// those of Options.Consumer). Durable and RoomOf are required.
type Spec struct {
	Durable, Description string
	FilterSubject        string
	FilterSubjects       []string
	RoomOf               func(subject string) string
	Doorbell             []string
	Setup                func(ctx context.Context) error
	Ready                func(info *jetstream.ConsumerInfo, created bool)
	Release              *Release
	// Log is the engine's logger, shared with its caller: not a copy.
	Log *zerolog.Logger
}

// spec is o's per-engine part; Log points into o.
func (o *Options) spec() Spec {
	return Spec{Durable: o.Consumer.Durable, Description: o.Consumer.Description,
		FilterSubject: o.Consumer.FilterSubject, FilterSubjects: o.Consumer.FilterSubjects,
		RoomOf: o.RoomOf, Doorbell: o.Doorbell, Setup: o.Setup, Ready: o.Ready, Release: o.Release, Log: &o.Log}
}

func (sp *Spec) check(mux *natsbus.Mux) error {
	if sp.Durable == "" || sp.RoomOf == nil {
		return errors.New("consume: Consumer.Durable and RoomOf are required")
	}
	if len(sp.Doorbell) > 0 && mux == nil {
		return errors.New("consume: Doorbell needs Mux")
	}
	if r := sp.Release; r != nil && (len(sp.Doorbell) == 0 || r.Stream == nil || r.Cursor == nil) {
		return errors.New("consume: Release needs Doorbell, Release.Stream and Release.Cursor")
	}
	if sp.Log == nil {
		sp.Log = new(zerolog.Nop())
	}
	return nil
}
