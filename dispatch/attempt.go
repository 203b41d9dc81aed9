package dispatch

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/bridgeworks/bridge/ackflow"
	"github.com/bridgeworks/bridge/claimcheck"
	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/retry"
	"github.com/bridgeworks/bridge/subjects"
)

// HeaderAttempt carries the attempt number (1 for the first) on work requests.
const HeaderAttempt = "Bridge-Attempt"

// headerMarker marks the bridge's own message on a reply subject.
const headerMarker = "Bridge-Marker"

// outcome is how one attempt ended.
type outcome int

const (
	outProcessed    outcome = iota // worker replied processed
	outFailed                      // worker replied failed (see retry)
	outTimeout                     // no reply within Timeout
	outBadReply                    // a reply that does not decode
	outNoResponders                // no worker subscribed
	outStopped                     // the bridge is stopping
	outNotSent                     // the request could not be sent (NATS away, payload store failing)
)

// message is one dispatched event.
type message struct {
	m       jetstream.Msg
	subj    subjects.Subject
	eventID string
	msgID   string // platform message id for processing-state calls, "" if none
	// redelivered: an earlier run may have executed this message's reply
	// commands without recording it; stored is when the event was stored.
	redelivered bool
	stored      time.Time
	log         zerolog.Logger
}

// handle runs one message to its end: processed and acked, failed and
// dead-lettered, or left for redelivery when the bridge stops.
func (d *Dispatcher) handle(ctx, hard context.Context, m jetstream.Msg) {
	msg, err := d.parse(ctx, m)
	if err != nil && ctx.Err() != nil { // stopping while fetching an offloaded payload
		d.redeliverLater(m)
		return
	}
	if err != nil {
		d.log.Error().Err(err).Str("subject", m.Subject()).Msg("stored event is unreadable; dead-lettering it")
		d.deadLetter(hard, &message{m: m, log: d.log}, "unreadable event: "+err.Error(), 0, 0)
		_ = d.settle(m, ackflow.Decision{Action: ackflow.ActionTerm, Reason: "unreadable event"})
		return
	}
	if msg.redelivered && d.finishedBefore(hard, msg) {
		msg.log.Debug().Msg("finished by an earlier run; not dispatched again")
		d.m.outcome("duplicate")
		_ = d.settle(m, ackflow.Decision{Action: ackflow.ActionAck})
		return
	}
	counted, waits := 0, 0
	for {
		if ctx.Err() != nil {
			d.redeliverLater(m)
			return
		}
		start := time.Now()
		out, reply, errText := d.attempt(ctx, hard, msg, counted+1)
		switch out {
		case outStopped:
			d.redeliverLater(m)
			return
		case outNoResponders:
			waits++
			d.m.outcome("no_responders")
			if waits == 1 || waits%20 == 0 {
				msg.log.Warn().Int("waits", waits).Msg("no worker subscribed; the message waits")
			}
			if !sleep(ctx, min(d.o.BackoffInitial<<min(waits-1, 16), d.o.BackoffMax)) {
				d.redeliverLater(m)
				return
			}
			continue
		case outNotSent: // like no workers: the attempt is not counted
			waits++
			d.m.outcome("not_sent")
			msg.log.Warn().Int("waits", waits).Str("error", errText).Msg("work request not sent; retrying it")
			if !sleep(ctx, min(d.o.BackoffInitial<<min(waits-1, 16), d.o.BackoffMax)) {
				d.redeliverLater(m)
				return
			}
			continue
		case outProcessed:
			d.m.latency.Observe(time.Since(start).Seconds())
			d.finish(hard, msg, reply, counted+1)
			return
		}
		counted++
		retry := out == outTimeout || out == outBadReply || reply.Retry
		d.m.outcome(map[outcome]string{outFailed: "failed", outTimeout: "timeout", outBadReply: "bad_reply"}[out])
		msg.log.Warn().Int("attempt", counted).Str("outcome", errText).Bool("retry", retry).Msg("attempt did not succeed")
		if !retry || counted >= d.o.MaxAttempts {
			reason := errText
			if retry {
				reason = fmt.Sprintf("gave up after %d attempts: %s", counted, errText)
			}
			d.fail(hard, msg, reason, counted)
			return
		}
		d.markFailed(hard, msg, counted, errText) // closes this attempt on the platform
		if !sleep(ctx, d.backoff(counted)) {
			d.redeliverLater(m)
			return
		}
	}
}

func (d *Dispatcher) backoff(attempt int) time.Duration {
	return retry.Policy{Initial: d.o.BackoffInitial, Max: d.o.BackoffMax}.Delay(attempt)
}

func (d *Dispatcher) parse(ctx context.Context, m jetstream.Msg) (*message, error) {
	subj, err := subjects.Parse(d.o.Prefix, m.Subject())
	if err != nil {
		return nil, err
	}
	ev, err := subjects.DecodeEvent(m.Data())
	if err != nil {
		return nil, err
	}
	msg := &message{m: m, subj: subj, eventID: ev.ID}
	if md, err := m.Metadata(); err == nil && (md.NumDelivered > 1 || md.Sequence.Stream <= d.replayTo.Load()) {
		msg.redelivered, msg.stored = true, md.Timestamp
	}
	if slices.Contains(d.o.MessageEvents, subj.Name) {
		if err := d.inline(ctx, &ev); err != nil { // the message id is in the data
			return nil, err
		}
		var p struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal(ev.Data, &p)
		msg.msgID = p.ID
	}
	msg.log = d.log.With().Str("room", subj.Room).Str("event_id", ev.ID).Logger()
	return msg, nil
}

// attempt sends one work request and waits for the worker's final reply.
func (d *Dispatcher) attempt(ctx, hard context.Context, msg *message, n int) (outcome, subjects.WorkReply, string) {
	token, w, done := d.expect()
	defer done()
	replies := w.ch
	work := msg.subj
	work.Kind = subjects.KindWork
	req := nats.NewMsg(work.String())
	req.Reply = d.inbox + "." + token
	req.Data = msg.m.Data()
	req.Header.Set(subjects.HeaderContentType, subjects.ContentTypeCloudEvents)
	req.Header.Set(subjects.HeaderMsgID, msg.eventID)
	req.Header.Set(HeaderAttempt, strconv.Itoa(n))
	if err := d.fitRequest(hard, msg, req); err != nil {
		return outNotSent, subjects.WorkReply{}, err.Error()
	}
	if err := d.o.NC.PublishMsg(req); err != nil {
		return outNotSent, subjects.WorkReply{}, err.Error() // not "no responders": nobody was asked
	}
	// A marker sent to our own reply subject right behind the request comes
	// back after the server's "no responders" status, if it sends one: no
	// worker means no attempt on the platform either. Worker replies that
	// overtake the marker are kept.
	marker := nats.NewMsg(req.Reply)
	marker.Header.Set(headerMarker, "1")
	if err := d.o.NC.PublishMsg(marker); err != nil {
		return outNoResponders, subjects.WorkReply{}, err.Error()
	}
	var early []*nats.Msg
	guard := time.NewTimer(5 * time.Second)
	defer guard.Stop()
wait:
	for {
		select {
		case r := <-replies:
			switch {
			case isNoResponders(r):
				return outNoResponders, subjects.WorkReply{}, "no responders"
			case r.Header.Get(headerMarker) != "":
				break wait
			default:
				early = append(early, r)
			}
		case <-guard.C: // the marker was lost (NATS reconnecting): go on
			break wait
		case <-hard.Done():
			return outStopped, subjects.WorkReply{}, "stopping"
		}
	}
	d.m.outcome("dispatched")
	if msg.msgID != "" {
		// Reported while the worker works; settled before the attempt ends,
		// so the platform sees processing before processed or failed.
		marked := make(chan struct{})
		go func() { // owned: waited for below
			defer close(marked)
			d.mark(hard, msg, "mark_processing", nil)
		}()
		defer func() { <-marked }()
	}
	timer := time.NewTimer(d.o.Timeout)
	defer timer.Stop()
	for {
		var r *nats.Msg
		if len(early) > 0 {
			r, early = early[0], early[1:]
		} else {
			select {
			case r = <-replies:
			case <-timer.C:
				return outTimeout, subjects.WorkReply{}, fmt.Sprintf("no reply within %s", d.o.Timeout)
			case <-hard.Done():
				return outStopped, subjects.WorkReply{}, "stopping"
			}
		}
		if isNoResponders(r) || r.Header.Get(headerMarker) != "" {
			continue
		}
		reply, err := subjects.DecodeWorkReply(r.Data)
		if err != nil {
			return outBadReply, subjects.WorkReply{}, "bad worker reply: " + err.Error()
		}
		switch reply.Status {
		case subjects.WorkProcessing:
			w.processing.Store(false) // the next one queues again
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
			timer.Reset(d.o.Timeout)
		case subjects.WorkProcessed:
			return outProcessed, reply, ""
		case subjects.WorkFailed:
			text := reply.Error
			if text == "" {
				text = "worker reported failure"
			}
			return outFailed, reply, text
		}
	}
}

func isNoResponders(m *nats.Msg) bool {
	return len(m.Data) == 0 && m.Header.Get("Status") == "503"
}

// finish runs the reply's commands in order, then marks the message
// processed (retrying only that call if it fails) and acks it.
func (d *Dispatcher) finish(hard context.Context, msg *message, reply subjects.WorkReply, attempts int) {
	for i, c := range reply.Commands {
		res := d.doUntilSettled(hard, msg, fmt.Sprintf("%s:cmd:%d", msg.eventID, i), connector.Command{Name: c.Command, Room: msg.subj.Room, Args: c.Args})
		d.publishResult(msg, c.Command, res)
		if !res.OK {
			if hard.Err() != nil {
				d.redeliverLater(msg.m)
				return
			}
			reason := fmt.Sprintf("reply command %d (%s) failed", i, c.Command)
			if res.Error != nil {
				reason += ": " + res.Error.Code + ": " + res.Error.Message
			}
			d.fail(hard, msg, reason, attempts)
			return
		}
	}
	if msg.msgID != "" {
		res := d.doUntilSettled(hard, msg, "", connector.Command{Name: "mark_processed", Room: msg.subj.Room, Args: msgArgs(msg.msgID, "")})
		if !res.OK && hard.Err() == nil {
			msg.log.Warn().Str("error", errCode(res)).Msg("the work is done but the platform refused mark_processed")
		}
	}
	d.m.outcome("processed")
	d.recordDone(msg, "processed")
	if err := d.settle(msg.m, ackflow.Decision{Action: ackflow.ActionAck}); err != nil {
		msg.log.Warn().Err(err).Msg("ack failed; the message may be redelivered")
	}
}

// doUntilSettled executes cmd until it succeeds or fails permanently:
// transient failures that outlast the executor's retries are tried again
// with a new id suffix, so a redelivery finds the earlier results.
func (d *Dispatcher) doUntilSettled(hard context.Context, msg *message, id string, cmd connector.Command) subjects.Result {
	for k := 0; ; k++ {
		cmd.ID = id
		if k > 0 && id != "" {
			cmd.ID = fmt.Sprintf("%s:%d", id, k)
		}
		cmd.MaybeExecuted, cmd.Since = msg.redelivered, msg.stored
		res := d.o.Exec.Do(hard, cmd)
		if res.OK || res.Error == nil || !res.Error.Retryable || hard.Err() != nil {
			return res
		}
		msg.log.Warn().Str("command", cmd.Name).Str("error", errCode(res)).Msg("command still failing; retrying it (not the worker)")
		if !sleep(hard, d.backoff(k+1)) {
			return res
		}
	}
}

// fail marks the message failed on the platform, dead-letters and terms it.
func (d *Dispatcher) fail(hard context.Context, msg *message, reason string, attempts int) {
	d.markFailed(hard, msg, attempts, reason)
	d.deadLetter(hard, msg, reason, 0, attempts)
	d.m.outcome("dead_lettered")
	d.recordDone(msg, "dead_lettered")
	_ = d.settle(msg.m, ackflow.Decision{Action: ackflow.ActionTerm, Reason: "dispatch failed"})
}

func (d *Dispatcher) markFailed(hard context.Context, msg *message, attempt int, reason string) {
	if msg.msgID == "" {
		return
	}
	if len(reason) > 1000 {
		reason = reason[:1000]
	}
	d.mark(hard, msg, "mark_failed", msgArgs(msg.msgID, reason))
}

// mark reports processing state. It carries no id: repeating one is
// harmless (Band opens another attempt, or refuses a second close with a
// 422 that is only logged), so it needs no idempotency store.
func (d *Dispatcher) mark(hard context.Context, msg *message, name string, args json.RawMessage) {
	if args == nil {
		args = msgArgs(msg.msgID, "")
	}
	res := d.o.Exec.Do(hard, connector.Command{Name: name, Room: msg.subj.Room, Args: args})
	if !res.OK && hard.Err() == nil {
		msg.log.Warn().Str("command", name).Str("error", errCode(res)).Msg("processing-state call failed")
	}
}

func (d *Dispatcher) deadLetter(hard context.Context, msg *message, reason string, status, attempts int) {
	src := msg.subj
	if src.Kind == "" {
		parsed, err := subjects.Parse(d.o.Prefix, msg.m.Subject())
		if err != nil {
			d.log.Error().Err(err).Msg("cannot dead-letter: unparsable subject")
			return
		}
		src = parsed
	}
	d.storeDeadLetter(hard, msg, src, reason, status, attempts)
}

func (d *Dispatcher) publishResult(msg *message, command string, res subjects.Result) {
	s := msg.subj
	s.Kind, s.Name = subjects.KindResult, subjects.EventName(command)
	b, _ := json.Marshal(claimcheck.FitResult(res, d.o.NC.MaxPayload()))
	_ = d.o.NC.Publish(s.String(), b)
}

// settle stops m's heartbeat, then settles it: a beat must not land after
// a NakWithDelay and reset its delay.
func (d *Dispatcher) settle(m jetstream.Msg, dec ackflow.Decision) error {
	d.hb.Release(m)
	return ackflow.Apply(m, dec)
}

// redeliverLater hands the message back to JetStream (never a bare Nak).
func (d *Dispatcher) redeliverLater(m jetstream.Msg) {
	_ = d.settle(m, ackflow.Decision{Action: ackflow.ActionRetry, Delay: time.Second})
}

func msgArgs(id, errText string) json.RawMessage {
	a := map[string]string{"message_id": id}
	if errText != "" {
		a["error"] = errText
	}
	b, _ := json.Marshal(a)
	return b
}

func errCode(r subjects.Result) string {
	if r.Error == nil {
		return ""
	}
	return r.Error.Code
}
