package dispatch

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/bridgeworks/bridge/tracing"
)

// startSpan starts the span of one dispatched event, continuing the trace
// its stored message carries (traceparent, set by the publisher). The
// returned context is hard with the span: the work request and the reply
// commands continue it. Without a Tracer both are no-ops.
func (d *Dispatcher) startSpan(hard context.Context, msg *message) (context.Context, func()) {
	if d.o.Tracer == nil {
		return hard, func() {}
	}
	ctx, span := d.o.Tracer.Start(tracing.Extract(hard, msg.m.Headers()), "dispatch "+msg.subj.Name,
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(attribute.String("bridge.platform", d.o.Platform), attribute.String("bridge.connection", d.o.Conn),
			attribute.String("bridge.room", msg.subj.Room), attribute.String("bridge.event_id", msg.eventID)))
	return ctx, func() { span.End() }
}
