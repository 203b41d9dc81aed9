package bridge

import (
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/trace"

	"github.com/bridgeworks/bridge/connector"
)

// Options are the bridge's runtime dependencies.
type Options struct {
	Log      zerolog.Logger
	Registry connector.Registry // platforms by configured name (the program passes platforms.All)
	// LookupEnv resolves *_env secrets, default os.LookupEnv.
	LookupEnv func(string) (string, bool)
	// OnReady is called once NATS is connected, the streams exist and the
	// HTTP listener is bound.
	OnReady func(Info)
	// ShutdownTimeout bounds the drain of in-flight work at shutdown, default 15s.
	ShutdownTimeout time.Duration
	// Version names the build in the bridge_build_info metric, default "dev".
	Version string
	// TracerProvider traces events, dispatch and commands (package
	// tracing); nil means no tracing.
	TracerProvider trace.TracerProvider
	// CommandsReleaseAfter is how long a connection takes no command before
	// its command consumer is released, default 2m (see consume.Release).
	CommandsReleaseAfter time.Duration
	// StartGCPercent, when positive, is the collector's target
	// (debug.SetGCPercent) while connections start, until none started
	// for 5 s (see gcRamp); 0 leaves the runtime's target alone.
	StartGCPercent int
}

// Info tells where the running bridge can be reached.
type Info struct {
	NATSClientURL string // where workers connect ("" when embedded with no listener and no URL)
	HTTPAddr      string // bound address of the HTTP listener, "" when disabled
	// Conn is the bridge's own NATS connection. Its inboxes are never a
	// reply destination, so an RPC request sent on it is not answered: make
	// RPC calls on a connection of your own, as a worker does.
	Conn *nats.Conn
}
