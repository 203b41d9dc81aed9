package dispatch

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/bridgeworks/bridge/ackflow"
	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/consume"
	"github.com/bridgeworks/bridge/retry"
	"github.com/bridgeworks/bridge/subjects"
	"github.com/bridgeworks/bridge/tracing"
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
	ref     string // the platform's message id for processing-state calls, "" if none
	// redelivered: an earlier run may have executed this message's reply
	// commands without recording it; stored is when the event was stored.
	redelivered bool
	stored      time.Time
	log         zerolog.Logger
}

// handled and handBack are the ends of handle: settle as d, or (only once
// the engine stops) hand the message back.
func handled(d ackflow.Decision) (ackflow.Decision, bool) { return d, true }

func handBack() (ackflow.Decision, bool) { return ackflow.Decision{}, false }

// handle is the engine's handler of one message: it runs it to its end,
// processed (ack) or failed and dead-lettered (term), or hands it back
// when the bridge stops.
func (d *Dispatcher) handle(ctx, hard context.Context, cm *consume.Msg) (ackflow.Decision, bool) {
	m := cm.JS
	msg, err := d.parse(ctx, cm)
	if err != nil && ctx.Err() != nil { // stopping while fetching an offloaded payload
		return handBack()
	}
	if err != nil {
		d.log.Error().Err(err).Str("subject", m.Subject()).Msg("stored event is unreadable; dead-lettering it")
		d.deadLetter(hard, &message{m: m, log: d.log}, "unreadable event: "+err.Error(), 0, 0)
		return handled(ackflow.Decision{Action: ackflow.ActionTerm, Reason: "unreadable event"})
	}
	if msg.redelivered && (d.finishedBefore(hard, msg) || d.processedBefore(hard, msg)) {
		msg.log.Debug().Msg("finished by an earlier run; not dispatched again")
		d.m.outcome("duplicate")
		d.recordDone(msg, "processed")
		return handled(ackflow.Decision{Action: ackflow.ActionAck})
	}
	hard, endSpan := d.startSpan(hard, msg) // the reply commands' calls continue it
	defer endSpan()
	counted := 0
	waits := retry.Policy{Initial: d.o.BackoffInitial, Max: d.o.BackoffMax}.Start()
	for {
		if ctx.Err() != nil {
			return handBack()
		}
		start := time.Now()
		out, reply, errText := d.attempt(ctx, hard, msg, counted+1)
		switch out {
		case outStopped:
			return handBack()
		case outNoResponders, outNotSent: // the attempt is not counted: nobody was asked
			wait := waits.Next()
			if out == outNoResponders {
				d.m.outcome("no_responders")
				if n := waits.Failures(); n == 1 || n%20 == 0 {
					msg.log.Warn().Int("waits", n).Msg("no worker subscribed; the message waits")
				}
			} else {
				d.m.outcome("not_sent")
				msg.log.Warn().Int("waits", waits.Failures()).Str("error", errText).Msg("work request not sent; retrying it")
			}
			if !retry.Sleep(ctx, wait) {
				return handBack()
			}
			continue
		case outProcessed:
			d.m.observeRoundTrip(time.Since(start).Seconds())
			return d.finish(hard, msg, reply, counted+1)
		}
		counted++
		again := out == outTimeout || out == outBadReply || reply.Retry
		d.m.outcome(map[outcome]string{outFailed: "failed", outTimeout: "timeout", outBadReply: "bad_reply"}[out])
		msg.log.Warn().Int("attempt", counted).Str("outcome", errText).Bool("retry", again).Msg("attempt did not succeed")
		if !again || counted >= d.o.MaxAttempts {
			reason := errText
			if again {
				reason = fmt.Sprintf("gave up after %d attempts: %s", counted, errText)
			}
			return d.fail(hard, msg, reason, counted)
		}
		d.markFailed(hard, msg, errText) // closes this attempt on the platform
		if !retry.Sleep(ctx, d.backoff(counted)) {
			return handBack()
		}
	}
}

func (d *Dispatcher) backoff(attempt int) time.Duration {
	return retry.Policy{Initial: d.o.BackoffInitial, Max: d.o.BackoffMax}.Delay(attempt)
}

func (d *Dispatcher) parse(ctx context.Context, cm *consume.Msg) (*message, error) {
	m := cm.JS
	subj, err := d.conn.ParseLoose(subjects.KindEvent, m.Subject())
	if err != nil {
		return nil, err
	}
	ev, err := subjects.DecodeEvent(m.Data())
	if err != nil {
		return nil, err
	}
	msg := &message{m: m, subj: subj, eventID: ev.ID}
	if cm.Delivered > 1 || cm.Seq <= d.replayTo.Load() {
		msg.redelivered, msg.stored = true, cm.Stored
	}
	if d.o.Tracker != nil {
		if err := d.inline(ctx, &ev); err != nil { // the platform's reference is in the data
			return nil, err
		}
		msg.ref, _ = d.o.Tracker.ProcessingRef(subj.Name, ev.Data)
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
	tracing.Inject(hard, req.Header) // a worker may continue the trace
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
	if msg.ref != "" {
		// Reported while the worker works; settled before the attempt ends,
		// so the platform sees processing before processed or failed.
		marked := make(chan struct{})
		go func() { // owned: waited for below
			defer close(marked)
			d.mark(hard, msg, connector.Processing, "")
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
func (d *Dispatcher) finish(hard context.Context, msg *message, reply subjects.WorkReply, attempts int) (ackflow.Decision, bool) {
	for i, c := range reply.Commands {
		res := d.doUntilSettled(hard, msg, fmt.Sprintf("%s:cmd:%d", msg.eventID, i), connector.Command{Name: c.Command, Room: msg.subj.Room, Args: c.Args})
		d.publishResult(msg, c.Command, res)
		if !res.OK {
			if hard.Err() != nil {
				return handBack()
			}
			reason := fmt.Sprintf("reply command %d (%s) failed", i, c.Command)
			if res.Error != nil {
				reason += ": " + res.Error.Code + ": " + res.Error.Message
			}
			return d.fail(hard, msg, reason, attempts)
		}
	}
	if msg.ref != "" {
		res := d.markProcessed(hard, msg)
		if !res.OK && hard.Err() != nil {
			// Stopped (the drain deadline, or the lease passed to another
			// process) before the platform heard: handed back, so the next
			// run marks it (its reply commands are not executed twice).
			return handBack()
		}
		if !res.OK {
			msg.log.Warn().Str("command", res.Command).Str("error", errCode(res)).Msg("the work is done but the platform refused to record it processed")
		}
	}
	d.m.outcome("processed")
	d.recordDone(msg, "processed")
	return handled(ackflow.Decision{Action: ackflow.ActionAck})
}

// processedCommand is the call that marks msg processed on the platform.
// Its id is derived from the event, so the executed-ids store remembers it:
// a run that crashed after the call but before settling the message is
// found out by processedBefore, and the platform never sees a second
// attempt opened and closed for one message.
func (d *Dispatcher) processedCommand(msg *message) connector.Command {
	cmd := d.o.Tracker.ProcessingCommand(connector.Processed, msg.subj.Room, msg.ref, "")
	cmd.Room = msg.subj.Room
	cmd.ID = msg.eventID + ":processed"
	return cmd
}

// markProcessed marks msg processed, retrying transient failures under the
// same id until the call succeeds, fails for good or hard ends.
func (d *Dispatcher) markProcessed(hard context.Context, msg *message) subjects.Result {
	cmd := d.processedCommand(msg)
	// MaybeExecuted unset: a stored failure is never returned.
	return d.untilSettled(hard, msg, cmd.Name, func(int) subjects.Result { return d.o.Exec.Do(hard, cmd) })
}

// executedChecker is the executor's Executed (cmdexec.Executor has it).
type executedChecker interface {
	Executed(ctx context.Context, cmd connector.Command) (bool, error)
}

// processedBefore reports whether an earlier run marked the redelivered msg
// processed on the platform already (its processed call is remembered, or
// the platform shows the message processed).
func (d *Dispatcher) processedBefore(ctx context.Context, msg *message) bool {
	ex, ok := d.o.Exec.(executedChecker)
	if !ok || msg.ref == "" || d.o.Tracker == nil || msg.eventID == "" {
		return false
	}
	cmd := d.processedCommand(msg)
	cmd.MaybeExecuted, cmd.Since = true, msg.stored
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	done, err := ex.Executed(ctx, cmd)
	if err != nil {
		msg.log.Warn().Err(err).Msg("cannot tell whether an earlier run marked the message processed; dispatching it")
	}
	return done
}

// doUntilSettled executes cmd until it succeeds or fails permanently:
// transient failures that outlast the executor's retries are tried again
// with a new id suffix, so a redelivery finds the earlier results. A
// result asking the room to rest (retry_after_ms) is waited out.
func (d *Dispatcher) doUntilSettled(hard context.Context, msg *message, id string, cmd connector.Command) subjects.Result {
	return d.untilSettled(hard, msg, cmd.Name, func(k int) subjects.Result {
		cmd.ID = id
		if k > 0 && id != "" {
			cmd.ID = fmt.Sprintf("%s:%d", id, k)
		}
		cmd.MaybeExecuted, cmd.Since = msg.redelivered, msg.stored
		return d.o.Exec.Do(hard, cmd)
	})
}

// untilSettled makes attempt k = 0, 1, … until one succeeds or fails for
// good or hard ends, waiting the backoff (or the result's retry_after_ms)
// between them.
func (d *Dispatcher) untilSettled(hard context.Context, msg *message, command string, attempt func(k int) subjects.Result) subjects.Result {
	for k := 0; ; k++ {
		res := attempt(k)
		if res.OK || res.Error == nil || !res.Error.Retryable || hard.Err() != nil {
			return res
		}
		msg.log.Warn().Str("command", command).Str("error", errCode(res)).Msg("command still failing; retrying it (not the worker)")
		if !retry.Sleep(hard, max(d.backoff(k+1), time.Duration(res.Error.RetryAfterMs)*time.Millisecond)) {
			return res
		}
	}
}

// fail marks the message failed on the platform, dead-letters and terms it.
func (d *Dispatcher) fail(hard context.Context, msg *message, reason string, attempts int) (ackflow.Decision, bool) {
	d.markFailed(hard, msg, reason)
	d.deadLetter(hard, msg, reason, 0, attempts)
	d.m.outcome("dead_lettered")
	d.recordDone(msg, "dead_lettered")
	return handled(ackflow.Decision{Action: ackflow.ActionTerm, Reason: "dispatch failed"})
}

func (d *Dispatcher) markFailed(hard context.Context, msg *message, reason string) {
	if msg.ref == "" {
		return
	}
	if len(reason) > 1000 {
		reason = strings.ToValidUTF8(reason[:1000], "")
	}
	d.mark(hard, msg, connector.Failed, reason)
}

// mark reports processing state through the platform's tracker. It
// carries no id: repeating one is harmless (the platform opens another
// attempt, or refuses a second close, which is only logged), so it needs
// no idempotency store.
func (d *Dispatcher) mark(hard context.Context, msg *message, state connector.ProcessingState, reason string) {
	cmd := d.o.Tracker.ProcessingCommand(state, msg.subj.Room, msg.ref, reason)
	cmd.Room = msg.subj.Room
	res := d.o.Exec.Do(hard, cmd)
	if !res.OK && hard.Err() == nil {
		msg.log.Warn().Str("command", cmd.Name).Str("state", state.String()).Str("error", errCode(res)).Msg("processing-state call failed")
	}
}

func (d *Dispatcher) deadLetter(hard context.Context, msg *message, reason string, status, attempts int) {
	src := msg.subj
	if src.Kind == "" {
		parsed, err := d.conn.ParseLoose(subjects.KindEvent, msg.m.Subject())
		if err != nil {
			d.log.Error().Err(err).Msg("cannot dead-letter: unparsable subject")
			return
		}
		src = parsed
	}
	d.storeDeadLetter(hard, msg, src, reason, status, attempts)
}

// publishResult sends a reply command's result on its P.res… subject.
// Results are core NATS: a failure is logged.
func (d *Dispatcher) publishResult(msg *message, command string, res subjects.Result) {
	subj := d.conn.Subject(subjects.KindResult, msg.subj.Room, subjects.EventName(command)).String()
	if err := ackflow.PublishResult(d.o.NC, subj, res); err != nil {
		msg.log.Warn().Err(err).Str("command", command).Msg("result not published")
	}
}

func errCode(r subjects.Result) string {
	if r.Error == nil {
		return ""
	}
	return r.Error.Code
}
