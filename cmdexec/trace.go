package cmdexec

import (
	"context"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/subjects"
	"github.com/bridgeworks/bridge/tracing"
)

// startSpan starts the span of one command, continuing the trace that
// parent carries or that hdr (the command's message headers, nil for Do)
// names. The returned context is parent with the span: the connector's
// REST calls made under it send its traceparent. end records the result.
// Without a Tracer both are no-ops.
func (e *Executor) startSpan(parent context.Context, hdr nats.Header, cmd connector.Command) (context.Context, func(subjects.Result)) {
	if e.o.Tracer == nil {
		return parent, func(subjects.Result) {}
	}
	if hdr != nil {
		parent = tracing.Extract(parent, hdr)
	}
	ctx, span := e.o.Tracer.Start(parent, "command "+cmd.Name, trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(attribute.String("bridge.platform", e.o.Platform), attribute.String("bridge.connection", e.conn.Name),
			attribute.String("bridge.room", cmd.Room), attribute.String("bridge.command_id", cmd.ID)))
	return ctx, func(res subjects.Result) {
		if !res.OK && res.Error != nil {
			span.SetStatus(codes.Error, res.Error.Code)
		}
		span.SetAttributes(attribute.Int("bridge.attempts", res.Attempts))
		span.End()
	}
}
