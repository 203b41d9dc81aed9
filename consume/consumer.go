package consume

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bridgeworks/bridge/ackflow"
	"github.com/bridgeworks/bridge/retry"
)

// newBarrier is the crash barrier for a consumer found with info.
func newBarrier(info *jetstream.ConsumerInfo, ackWait time.Duration) *ackflow.Barrier {
	return ackflow.NewBarrier(info, 3*ackWait)
}

// setup makes sure the consumer exists (or, with Release, that the engine
// knows where it starts released), retrying with backoff; false when ctx
// ends first.
func (e *engine) setup(ctx context.Context) (*jetstream.ConsumerInfo, bool, bool) {
	b := retry.Policy{Initial: 250 * time.Millisecond, Max: 15 * time.Second}.Start()
	prepare := e.bindConsumer
	if e.sp.Release != nil {
		prepare = e.releasedStart
	}
	for {
		info, created, err := e.prepared(ctx, prepare)
		if err == nil {
			return info, created, true
		}
		if ctx.Err() != nil {
			return nil, false, false
		}
		wait := b.Next()
		e.logger().Warn().Err(err).Int64("retry_in_ms", wait.Milliseconds()).Msg("consumer not ready; retrying")
		if !retry.Sleep(ctx, wait) {
			return nil, false, false
		}
	}
}

// ensureConsumer creates or updates the consumer, and says whether it had
// to create it.
func (e *engine) ensureConsumer(ctx context.Context) (_ *jetstream.ConsumerInfo, created bool, err error) {
	return e.prepared(ctx, e.bindConsumer)
}

// prepared runs the handler's Setup, then next, within setupTimeout.
func (e *engine) prepared(ctx context.Context, next func(context.Context) (*jetstream.ConsumerInfo, bool, error)) (*jetstream.ConsumerInfo, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	if e.sp.Setup != nil {
		if err := e.sp.Setup(ctx); err != nil {
			return nil, false, err
		}
	}
	return next(ctx)
}

// bindConsumer creates the consumer or updates the existing one, keeping
// where an existing one starts; a new one starts after the cursor when the
// engine was released.
func (e *engine) bindConsumer(ctx context.Context) (*jetstream.ConsumerInfo, bool, error) {
	prev, missing, err := e.lookupConsumer(ctx)
	if err != nil {
		return nil, false, err
	}
	return e.bind(ctx, prev, missing)
}

// lookupConsumer finds the consumer; missing when it does not exist.
func (e *engine) lookupConsumer(ctx context.Context) (_ jetstream.Consumer, missing bool, _ error) {
	prev, err := e.o.JS.Consumer(ctx, e.o.Stream, e.sp.Durable)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, true, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("consumer %s on %s: %w", e.sp.Durable, e.o.Stream, err)
	}
	return prev, false, nil
}

// bind creates the consumer (created) or updates prev, the existing one.
func (e *engine) bind(ctx context.Context, prev jetstream.Consumer, created bool) (_ *jetstream.ConsumerInfo, _ bool, err error) {
	cfg := e.o.Consumer
	cfg.Durable, cfg.Description = e.sp.Durable, e.sp.Description
	cfg.FilterSubject, cfg.FilterSubjects = e.sp.FilterSubject, e.sp.FilterSubjects
	if !created {
		// Where a consumer starts cannot change once it exists.
		c := prev.CachedInfo().Config
		cfg.DeliverPolicy, cfg.OptStartSeq, cfg.OptStartTime = c.DeliverPolicy, c.OptStartSeq, c.OptStartTime
	} else if e.sp.Release != nil {
		// Released, or lost while held: after what is known settled.
		e.mu.Lock()
		settled := e.settled
		e.mu.Unlock()
		if after := max(e.cursor, settled); after > 0 {
			cfg.DeliverPolicy, cfg.OptStartSeq, cfg.OptStartTime = jetstream.DeliverByStartSequencePolicy, after+1, nil
		}
	}
	if e.o.Configure != nil {
		var info *jetstream.ConsumerInfo
		if !created {
			info = prev.CachedInfo()
		}
		if err := e.o.Configure(ctx, &cfg, info); err != nil {
			return nil, false, fmt.Errorf("consumer %s on %s: %w", e.sp.Durable, e.o.Stream, err)
		}
	}
	var cons jetstream.Consumer
	if created {
		// Not CreateOrUpdate: a consumer another process created meanwhile
		// with another start is not overwritten; the next try takes it.
		cons, err = e.o.JS.CreateConsumer(ctx, e.o.Stream, cfg)
	} else {
		cons, err = e.o.JS.CreateOrUpdateConsumer(ctx, e.o.Stream, cfg)
	}
	if err != nil {
		return nil, false, fmt.Errorf("consumer %s on %s: %w", e.sp.Durable, e.o.Stream, err)
	}
	e.cons = cons
	return cons.CachedInfo(), created, nil
}
