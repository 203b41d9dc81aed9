package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/bridgeworks/bridge/natsbus"
)

// eventsStream is BRIDGE_EVENTS under the default prefix (the bench always
// runs with it): subjects.StreamName(subjects.DefaultPrefix, subjects.StreamEvents).
const eventsStream = "BRIDGE_EVENTS"

// natsEnv is an embedded NATS server (JetStream on, file store, the
// bridge's streams) with an in-process client connection, as the bridge
// runs it by default. Baselines publish through it.
type natsEnv struct {
	srv *natsbus.Embedded
	nc  *nats.Conn
	js  jetstream.JetStream
}

// startNATS starts a server storing in dir with a 127.0.0.1 listener (for
// observers), connects in-process and creates the bridge's streams.
// pending is the client's PublishAsync window.
func startNATS(ctx context.Context, dir string, pending int, log zerolog.Logger) (*natsEnv, error) {
	srv, err := natsbus.StartEmbedded(natsbus.EmbeddedOptions{Listen: "127.0.0.1:0", StoreDir: dir, ServerName: "bench"}, log)
	if err != nil {
		return nil, err
	}
	nc, err := natsbus.Connect(ctx, natsbus.Options{Embedded: srv.Server, Name: "bench-baseline"}, log)
	if err != nil {
		srv.Shutdown()
		return nil, err
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(pending))
	if err == nil {
		err = natsbus.EnsureStreams(ctx, js, natsbus.StreamOptions{})
	}
	if err != nil {
		nc.Close()
		srv.Shutdown()
		return nil, fmt.Errorf("nats: %w", err)
	}
	return &natsEnv{srv: srv, nc: nc, js: js}, nil
}

func (n *natsEnv) url() string { return n.srv.ClientURL() }

func (n *natsEnv) close() {
	n.nc.Close()
	n.srv.Shutdown()
}

// observer is a separate TCP client of a NATS server, used to count and
// consume what a pipeline stored, so that measuring does not share the
// pipeline's own connection.
type observer struct {
	nc *nats.Conn
	js jetstream.JetStream
	st jetstream.Stream
}

func newObserver(ctx context.Context, url string) (*observer, error) {
	nc, err := nats.Connect(url, nats.Name("bench-observer"))
	if err != nil {
		return nil, fmt.Errorf("observer: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("observer: %w", err)
	}
	st, err := js.Stream(ctx, eventsStream)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("observer: %w", err)
	}
	return &observer{nc: nc, js: js, st: st}, nil
}

func (o *observer) close() { o.nc.Close() }

// count returns how many stored messages match filter, and on how many
// distinct subjects.
func (o *observer) count(ctx context.Context, filter string) (msgs uint64, subjects int, err error) {
	info, err := o.st.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		return 0, 0, err
	}
	for _, n := range info.State.Subjects {
		msgs += n
	}
	return msgs, len(info.State.Subjects), nil
}

// waitCount polls until at least want messages match filter and returns
// the time the count was first seen reached. poll bounds the time error.
func (o *observer) waitCount(ctx context.Context, filter string, want uint64, poll time.Duration) (time.Time, error) {
	t := time.NewTicker(poll)
	defer t.Stop()
	var got uint64
	for {
		n, _, err := o.count(ctx, filter)
		if err == nil {
			got = n
			if n >= want {
				return time.Now(), nil
			}
		}
		select {
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("stored %d of %d on %s: %w", got, want, filter, ctx.Err())
		case <-t.C:
		}
	}
}

// evtFilter matches every message_created event of platform band.
const evtFilter = "bridge.evt.band.*.*.message_created"
