// Package tracing sets up OpenTelemetry tracing for the bridge and carries
// W3C trace context (traceparent, tracestate) in NATS message headers.
//
// Start with [New]: it returns a trace.TracerProvider from the [Config]
// (a no-op provider when tracing is off, the default) and a shutdown func
// that flushes the exporter. [Inject] and [Extract] move a span context
// into and out of a nats.Header. The provider is passed down explicitly;
// nothing here sets OpenTelemetry's global state.
//
// The path a trace follows: the publisher starts a span per platform event
// and stores its context with the event; managed dispatch continues it and
// sends it on the work request, so a worker can continue it too; the
// command executor continues the context of a command (from its headers,
// or from the dispatch that runs a worker's reply); the connectors' HTTP
// client sends it to the platform on every REST call (connector.NewHTTPClient).
package tracing
