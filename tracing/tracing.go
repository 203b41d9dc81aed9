package tracing

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Config says whether and where to export traces.
type Config struct {
	Enabled bool
	// Endpoint is the OTLP/HTTP collector URL, e.g. "http://otel-collector:4318"
	// ("" means the exporter's default, localhost:4318, or the standard
	// OTEL_EXPORTER_OTLP_* environment variables).
	Endpoint string
	// ServiceName names the bridge in traces, default "bridge".
	ServiceName string
	// SampleRatio of new traces kept, 0 < r ≤ 1, default 1; a trace that
	// arrives with a sampled parent is always kept.
	SampleRatio float64
}

// New returns the tracer provider for c and a shutdown that flushes what
// is buffered. With c.Enabled false both are no-ops.
func New(ctx context.Context, c Config) (trace.TracerProvider, func(context.Context) error, error) {
	if !c.Enabled {
		return noop.NewTracerProvider(), func(context.Context) error { return nil }, nil
	}
	var opts []otlptracehttp.Option
	if c.Endpoint != "" {
		opts = append(opts, otlptracehttp.WithEndpointURL(c.Endpoint))
	}
	exp, err := otlptracehttp.New(ctx, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("tracing: exporter: %w", err)
	}
	tp := NewProvider(sdktrace.WithBatcher(exp), c)
	return tp, tp.Shutdown, nil
}

// NewProvider is the SDK provider New builds, around any span processor
// option (tests pass sdktrace.WithSyncer of an in-memory exporter).
func NewProvider(processor sdktrace.TracerProviderOption, c Config) *sdktrace.TracerProvider {
	name := c.ServiceName
	if name == "" {
		name = "bridge"
	}
	ratio := c.SampleRatio
	if ratio <= 0 || ratio > 1 {
		ratio = 1
	}
	return sdktrace.NewTracerProvider(processor,
		sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", name))),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))))
}

// propagator is the W3C trace context format, the only one the bridge uses.
var propagator = propagation.TraceContext{}

// headerCarrier is a nats.Header as a propagation carrier. NATS header
// names are case-sensitive and the W3C names are lower case, so keys are
// written and read exactly as given (nats.Header.Set would not change
// them either, but Get must not canonicalise).
type headerCarrier nats.Header

func (h headerCarrier) Get(key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func (h headerCarrier) Set(key, value string) { h[key] = []string{value} }

func (h headerCarrier) Keys() []string {
	out := make([]string, 0, len(h))
	for k := range h {
		out = append(out, k)
	}
	return out
}

// Inject writes the span context of ctx into h (nothing when ctx carries
// none).
func Inject(ctx context.Context, h nats.Header) {
	if h == nil {
		return
	}
	propagator.Inject(ctx, headerCarrier(h))
}

// Extract returns ctx with the span context carried by h, if any.
func Extract(ctx context.Context, h nats.Header) context.Context {
	if h == nil {
		return ctx
	}
	return propagator.Extract(ctx, headerCarrier(h))
}

// Tracer returns the bridge's tracer of tp (a no-op one when tp is nil).
func Tracer(tp trace.TracerProvider) trace.Tracer {
	if tp == nil {
		tp = noop.NewTracerProvider()
	}
	return tp.Tracer("github.com/bridgeworks/bridge")
}
