package bridge

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bridgeworks/bridge/retry"
	"github.com/bridgeworks/bridge/subjects"
)

// offload makes an event message that is too large for NATS fit: its data
// goes to the connection's payload bucket and msg's body becomes the same
// event with a reference (dataref) instead. It retries the store with
// backoff until ctx ends: an event is never dropped, and the events behind
// it wait for a store round trip, not for ever. It fails at once only for an
// event that would not fit even without its data (a max_payload of a few
// hundred bytes).
func (p *publisher) offload(ctx context.Context, msg *nats.Msg) error {
	ev, err := subjects.DecodeEvent(msg.Data)
	if err != nil {
		return fmt.Errorf("offload %s: %w", msg.Subject, err) // the bridge encoded it: cannot happen
	}
	if len(ev.Data) == 0 {
		return fmt.Errorf("event %s: larger than NATS max_payload (%d bytes) even without its data", ev.ID, p.cc.Limit())
	}
	size := len(msg.Data)
	bo := retry.Policy{Initial: 50 * time.Millisecond, Max: 5 * time.Second}.Start()
	for {
		ref, err := p.cc.Put(ctx, ev.Data)
		if err == nil {
			ev.Offload(ref)
			msg.Data = ev.AppendJSON(nil)
			break
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		wait := bo.Next()
		p.log.Warn().Err(err).Str("subject", msg.Subject).Int64("retry_in_ms", wait.Milliseconds()).Msg("event too large for NATS and not offloaded yet; retrying")
		if !retry.Sleep(ctx, wait) {
			return ctx.Err()
		}
	}
	ref, _ := ev.Ref()
	limit := p.cc.Limit()
	p.m.count(p.conn, cOffloaded)
	p.log.Warn().Str("subject", msg.Subject).Str("event_id", ev.ID).Int("size", size).Int64("limit", limit).
		Str("bucket", ref.Bucket).Str("object", ref.Object).Msg("event larger than NATS max_payload; its data is offloaded and the event carries a reference")
	p.sys(ctx, subjects.LifecyclePayloadOffloaded, map[string]any{
		"event_id": ev.ID, "subject": msg.Subject, "size": size, "limit": limit, "bucket": ref.Bucket, "object": ref.Object,
	})
	return nil
}
