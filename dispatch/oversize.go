package dispatch

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bridgeworks/bridge/ackflow"
	"github.com/bridgeworks/bridge/claimcheck"
	"github.com/bridgeworks/bridge/retry"
	"github.com/bridgeworks/bridge/subjects"
)

// inline puts back the data of an event stored by reference, retrying
// until it is read or ctx ends. A payload that is gone for good (expired,
// deleted, not what the reference says) is logged and the event goes on
// without its data.
func (d *Dispatcher) inline(ctx context.Context, ev *subjects.Event) error {
	ref, ok := ev.Ref()
	if !ok {
		return nil
	}
	b := retry.Policy{Initial: 100 * time.Millisecond, Max: 5 * time.Second}.Start()
	for {
		data, err := claimcheck.Fetch(ctx, d.o.JS, ref)
		switch {
		case err == nil:
			ev.Data = data
			return nil
		case ctx.Err() != nil:
			return err
		case errors.Is(err, jetstream.ErrMsgNotFound) || errors.Is(err, jetstream.ErrObjectNotFound) ||
			errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, claimcheck.ErrMismatch):
			d.log.Warn().Err(err).Str("event_id", ev.ID).Msg("payload of the event is gone; dispatching it without its data")
			return nil
		}
		wait := b.Next()
		d.log.Warn().Err(err).Str("event_id", ev.ID).Int64("retry_in_ms", wait.Milliseconds()).Msg("payload of the event not read; retrying")
		if !retry.Sleep(ctx, wait) {
			return ctx.Err()
		}
	}
}

// deadLetterTries bounds the attempts to store one dead letter.
const deadLetterTries = 5

// fitRequest makes a work request fit into one NATS message: a stored event
// close to max_payload is over it once the request's headers are added, so
// its data goes to the connection's payload bucket and the request carries
// the event with a reference (dataref), as an offloaded event would.
func (d *Dispatcher) fitRequest(ctx context.Context, msg *message, req *nats.Msg) error {
	if claimcheck.Fits(d.o.NC, req) {
		return nil
	}
	size, limit := claimcheck.PayloadSize(req), d.o.NC.MaxPayload()
	ev, err := subjects.DecodeEvent(req.Data)
	if err != nil {
		return fmt.Errorf("work request over max_payload: %w", err)
	}
	if len(ev.Data) == 0 {
		return fmt.Errorf("work request of %d bytes is over max_payload %d even without the event's data", size, limit)
	}
	ref, err := d.o.Payloads.Put(ctx, ev.Data)
	if err != nil {
		return fmt.Errorf("work request over max_payload, data not offloaded: %w", err)
	}
	ev.Offload(ref)
	req.Data = ev.AppendJSON(nil)
	d.m.outcome("offloaded")
	msg.log.Info().Int64("size", size).Int64("limit", limit).Str("bucket", ref.Bucket).Str("object", ref.Object).
		Msg("work request over max_payload; the event's data goes by reference")
	return nil
}

// storeDeadLetter publishes a dead letter, trying a few times: a dead
// letter too large for NATS goes by reference (see ackflow.DeadLetter), so
// what is left to fail is NATS itself. The message is termed either way
// (it stays in the events stream), so a lost dead letter is logged as an
// error and counted.
func (d *Dispatcher) storeDeadLetter(hard context.Context, msg *message, src subjects.Subject, reason string, status, attempts int) {
	b := retry.Policy{Initial: 100 * time.Millisecond, Max: 2 * time.Second}.Start()
	for try := 1; ; try++ {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(hard), 5*time.Second)
		err := ackflow.DeadLetter(ctx, d.o.JS, d.o.Payloads, d.o.Prefix, src, msg.m.Data(), msg.m.Headers(), reason, status, attempts)
		cancel()
		if err == nil {
			return
		}
		wait := b.Next()
		if try == deadLetterTries || !retry.Sleep(hard, wait) {
			d.m.outcome("dead_letter_lost")
			msg.log.Error().Err(err).Int("tries", try).Str("reason", reason).Msg("dead letter not stored; the event stays in the events stream")
			return
		}
		msg.log.Warn().Err(err).Int64("retry_in_ms", wait.Milliseconds()).Msg("dead letter not stored; retrying")
	}
}
