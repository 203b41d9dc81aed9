package cmdexec

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/bridgeworks/bridge/ackflow"
	"github.com/bridgeworks/bridge/claimcheck"
	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/consume"
	"github.com/bridgeworks/bridge/retry"
	"github.com/bridgeworks/bridge/subjects"
)

// opTimeout bounds one NATS round trip of the durable path (KV, DLQ).
const opTimeout = 5 * time.Second

// opRetry paces the retries of a store or DLQ call that failed.
func opRetry() retry.Policy {
	return retry.Policy{Initial: 100 * time.Millisecond, Max: 5 * time.Second}
}

// target is where a durable command's result and dead letter go.
type target struct {
	res string           // P.res…: the command's subject with kind res, the rest as written
	src subjects.Subject // the command subject, for the DLQ (room escaped when the token was bad)
}

// parse turns a durable message into a command. A bad subject or body
// comes back as a RequestError naming the field, with a command that still
// carries an id and name for the result.
func (e *Executor) parse(m *consume.Msg) (connector.Command, target, error) {
	subj := m.JS.Subject()
	id := m.JS.Headers().Get(subjects.HeaderMsgID)
	if id == "" {
		// Stable across redeliveries of this message, unlike a random id.
		id = fmt.Sprintf("seq-%d-%d", m.Seq, m.Stored.UnixNano())
	}
	var t target
	t.res, _ = e.conn.Rekind(subj, subjects.KindCommand, subjects.KindResult) // the consumer's filter vouches for the kind
	src, err := e.conn.ParseLoose(subjects.KindCommand, subj)
	t.src = src
	cmd := connector.Command{ID: id, Name: src.Name, Room: src.Room}
	var pe *subjects.PartError
	switch {
	case errors.As(err, &pe) && pe.Part == "room":
		cmd.Room = ""
		return cmd, t, connector.BadRequest("room", "subject %q: %v", subj, pe.Err)
	case err != nil || !validName(src.Name):
		t.src.Name = subjects.EscapeToken(src.Name)
		cmd.Room = ""
		return cmd, t, connector.BadRequest("command", "subject %q: want <room>.<command> after the connection", subj)
	}
	args, err := normalizeArgs(m.JS.Data())
	if err != nil {
		return cmd, t, err
	}
	cmd.Args = args
	return cmd, t, nil
}

// process is the engine's handler of one durable command: answer a known
// id from the store, otherwise execute it, store and publish the result,
// and dead-letter a failure. It returns how to settle the message (Ack or
// Term), or false when shutdown cut it short and the message is to be
// handed back.
func (e *Executor) process(stop, hard context.Context, m *consume.Msg) (ackflow.Decision, bool) {
	cmd, t, badInput := e.parse(m)
	log := e.log.With().Str("subject", m.JS.Subject()).Str("command", cmd.Name).Str("id", cmd.ID).Logger()

	// A first delivery cannot have been executed when the stream's duplicate
	// window covers the store's memory: the stream refused a repeated id.
	// Then only redeliveries ask the store.
	var stored subjects.Result
	found, ok := false, true
	if m.Delivered > 1 || e.firstLookup.Load() {
		stored, found, ok = e.lookupDurable(stop, hard, cmd.ID, log)
	}
	if !ok {
		return ackflow.Decision{}, false
	}
	var res subjects.Result
	ref := ""
	switch {
	case found:
		res = stored
		e.m.outcome(cmd.Name, outcomeDuplicate)
		log.Debug().Msg("already executed; answering from the store")
	case badInput != nil:
		res = badRequestResult(cmd, badInput)
	default:
		if m.Delivered > 1 {
			cmd.MaybeExecuted, cmd.Since = true, m.Stored
		}
		traced, endSpan := e.startSpan(hard, m.JS.Headers(), cmd)
		out := e.execute(stop, traced, cmd, log)
		endSpan(out.res)
		if !out.done {
			m.RetryIn = out.retryIn
			return ackflow.Decision{}, false
		}
		res, ref = out.res, out.ref
	}
	res = claimcheck.FitResult(res, e.o.NC.MaxPayload()) // the record and the result are what NATS can carry
	enc, err := json.Marshal(res)                        // once: the record is the result as published
	if err != nil {
		// Not reached: a Result's data is valid JSON (rawJSON).
		log.Error().Err(err).Msg("result does not encode")
		enc = nil
	}
	if !found {
		e.count(res, log)
		// Recorded even past the drain deadline: the command did run.
		if err == nil {
			if err := e.record(hard, cmd.ID, ref, enc); err != nil {
				errLog(log.Warn(), err).Msg("executed id not stored; a redelivery would execute it again")
			}
		}
	}
	e.publishResult(t.res, m.JS.Headers().Get(subjects.HeaderReplyTo), res, enc, log)
	d := settleDecision(res)
	if d.Action == ackflow.ActionTerm && !e.deadLetter(stop, hard, t.src, m, cmd.ID, reasonOf(res), res, log) {
		return ackflow.Decision{}, false
	}
	return d, true
}

// oneLine cuts s to one line of at most n bytes, for a TermWithReason.
func oneLine(s string, n int) string {
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = s[:i]
	}
	if len(s) > n {
		s = strings.ToValidUTF8(s[:n], "")
	}
	return s
}

// lookupDurable asks the store about id, retrying until it answers or stop
// ends (ok false): executing without knowing could execute an id twice.
func (e *Executor) lookupDurable(stop, hard context.Context, id string, log zerolog.Logger) (res subjects.Result, found, ok bool) {
	b := opRetry().Start()
	for {
		ctx, cancel := context.WithTimeout(hard, opTimeout)
		res, found, err := e.lookup(ctx, id)
		cancel()
		if err == nil {
			return res, found, true
		}
		wait := b.Next()
		errLog(log.Warn(), err).Int64("retry_in_ms", wait.Milliseconds()).Msg("executed-id lookup failed; retrying")
		if !retry.Sleep(stop, wait) {
			return res, false, false
		}
	}
}

// deadLetter publishes the failed command to the DLQ, retrying until it is
// stored or stop ends (false). Retrying is safe: the dead letter's
// Nats-Msg-Id is derived from the command, so it is stored once.
func (e *Executor) deadLetter(stop, hard context.Context, src subjects.Subject, m *consume.Msg, id, reason string, res subjects.Result, log zerolog.Logger) bool {
	hdr := nats.Header{}
	for k, v := range m.JS.Headers() {
		hdr[k] = v
	}
	hdr.Set(subjects.HeaderMsgID, id) // a generated id names the dead letter too
	b := opRetry().Start()
	for {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(hard), opTimeout)
		err := ackflow.DeadLetter(ctx, e.o.JS, e.payloads, e.o.Prefix, src, m.JS.Data(), hdr, reason, res.Status, res.Attempts)
		cancel()
		if err == nil {
			log.Debug().Int("status", res.Status).Msg("dead-lettered")
			return true
		}
		wait := b.Next()
		errLog(log.Warn(), err).Int64("retry_in_ms", wait.Milliseconds()).Msg("dead-letter failed; retrying")
		if !retry.Sleep(stop, wait) {
			return false
		}
	}
}

// tooLarge reports a result replaced by [claimcheck.FitResult]: the command
// ran, so it is not dead-lettered (republishing it would run it again).
func tooLarge(res subjects.Result) bool {
	return res.Error != nil && res.Error.Code == subjects.ErrCodeTooLarge
}

// reasonOf is the Bridge-Error of a failed result: "<code>: <message>".
func reasonOf(res subjects.Result) string {
	if res.Error == nil {
		return "failed"
	}
	return res.Error.Code + ": " + res.Error.Message
}

// publishResult sends res (enc, its encoding, when not nil) on the result
// subject and, when set, valid and allowed (replyAllowed), on replyTo
// (Bridge-Reply-To). Results are core NATS: a failure is logged.
func (e *Executor) publishResult(subject, replyTo string, res subjects.Result, enc []byte, log zerolog.Logger) {
	if replyTo != "" && !e.replyAllowed(replyTo, replyPathResult, log) {
		replyTo = ""
	}
	for _, s := range []string{subject, replyTo} {
		if s == "" {
			continue
		}
		var err error
		if enc != nil {
			err = ackflow.PublishEncoded(e.o.NC, s, res.CommandID, enc)
		} else {
			err = ackflow.PublishResult(e.o.NC, s, res)
		}
		if err != nil {
			log.Warn().Err(err).Str("to", s).Msg("result not published")
		}
		if replyTo == subject {
			break
		}
	}
}
