package cmdexec

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/bridgeworks/bridge/ackflow"
	"github.com/bridgeworks/bridge/claimcheck"
	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/subjects"
)

// opTimeout bounds one NATS round trip of the durable path (KV, DLQ).
const opTimeout = 5 * time.Second

// target is where a durable command's result and dead letter go.
type target struct {
	res string           // P.res… subject
	src subjects.Subject // the command subject, for the DLQ (room escaped when the token was bad)
}

// parse turns a durable message into a command. A bad subject or body
// comes back as a RequestError naming the field, with a command that still
// carries an id and name for the result.
func (e *Executor) parse(it *item) (connector.Command, target, error) {
	m := it.msg
	subj := m.Subject()
	cmdPrefix := subjects.Filter(e.o.Prefix, subjects.KindCommand, e.o.Platform, e.o.Conn)
	rest := strings.TrimPrefix(subj, cmdPrefix[:len(cmdPrefix)-1])
	id := m.Headers().Get(subjects.HeaderMsgID)
	if id == "" {
		// Stable across redeliveries of this message, unlike a random id.
		id = fmt.Sprintf("seq-%d-%d", it.seq, it.stored.UnixNano())
	}
	t := target{res: subjects.Filter(e.o.Prefix, subjects.KindResult, e.o.Platform, e.o.Conn)}
	t.res = t.res[:len(t.res)-1] + rest
	room, name, _ := strings.Cut(rest, ".")
	t.src = subjects.Subject{Prefix: e.o.Prefix, Kind: subjects.KindCommand, Platform: e.o.Platform, Conn: e.o.Conn, Room: room, Name: name}
	cmd := connector.Command{ID: id, Name: name}
	r, roomErr := subjects.UnescapeToken(room)
	if roomErr == nil {
		t.src.Room, cmd.Room = r, r
	}
	if strings.Contains(name, ".") || !validName(name) {
		t.src.Name = subjects.EscapeToken(name)
		return cmd, t, connector.BadRequest("command", "subject %q: want <room>.<command> after the connection", subj)
	}
	if roomErr != nil {
		return cmd, t, connector.BadRequest("room", "subject %q: %v", subj, roomErr)
	}
	args, err := normalizeArgs(m.Data())
	if err != nil {
		return cmd, t, err
	}
	cmd.Args = args
	return cmd, t, nil
}

// process handles one durable command: answer a known id from the store,
// otherwise execute it, store and publish the result, and dead-letter a
// failure. It returns how to settle the message (Ack or Term), or false when
// shutdown cut it short and the message is to be handed back.
func (e *Executor) process(stop, hard context.Context, it *item) (ackflow.Decision, bool) {
	cmd, t, badInput := e.parse(it)
	log := e.log.With().Str("subject", it.msg.Subject()).Str("command", cmd.Name).Str("id", cmd.ID).Logger()

	// A first delivery cannot have been executed when the stream's duplicate
	// window covers the store's memory: the stream refused a repeated id.
	// Then only redeliveries ask the store.
	var stored subjects.Result
	found, ok := false, true
	if md, err := it.msg.Metadata(); err != nil || md.NumDelivered > 1 || e.firstLookup.Load() {
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
		if md, err := it.msg.Metadata(); err == nil && md.NumDelivered > 1 {
			cmd.MaybeExecuted, cmd.Since = true, it.stored
		}
		out := e.execute(stop, hard, cmd, log)
		if !out.done {
			it.retryIn = out.retryIn
			return ackflow.Decision{}, false
		}
		res, ref = out.res, out.ref
	}
	res = claimcheck.FitResult(res, e.o.NC.MaxPayload()) // the record and the result are what NATS can carry
	if !found {
		e.count(res, log)
		// Recorded even past the drain deadline: the command did run.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(hard), opTimeout)
		if err := e.remember(ctx, cmd.ID, ref, res, false); err != nil {
			errLog(log.Warn(), err).Msg("executed id not stored; a redelivery would execute it again")
		}
		cancel()
	}
	e.publishResult(t.res, it.msg.Headers().Get(subjects.HeaderReplyTo), res, log)
	d := ackflow.Decision{Action: ackflow.ActionAck}
	if !res.OK && !tooLarge(res) { // too_large: executed, its data only did not fit
		reason := reasonOf(res)
		if !e.deadLetter(stop, hard, t.src, it, cmd.ID, reason, res, log) {
			return ackflow.Decision{}, false
		}
		d = ackflow.Decision{Action: ackflow.ActionTerm, Reason: oneLine(reason, 256)}
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
	wait := 100 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(hard, opTimeout)
		res, found, err := e.lookup(ctx, id)
		cancel()
		if err == nil {
			return res, found, true
		}
		errLog(log.Warn(), err).Dur("retry_in", wait).Msg("executed-id lookup failed; retrying")
		if !sleep(stop, wait) {
			return res, false, false
		}
		wait = min(wait*2, 5*time.Second)
	}
}

// deadLetter publishes the failed command to the DLQ, retrying until it is
// stored or stop ends (false). Retrying is safe: the dead letter's
// Nats-Msg-Id is derived from the command, so it is stored once.
func (e *Executor) deadLetter(stop, hard context.Context, src subjects.Subject, it *item, id, reason string, res subjects.Result, log zerolog.Logger) bool {
	hdr := nats.Header{}
	for k, v := range it.msg.Headers() {
		hdr[k] = v
	}
	hdr.Set(subjects.HeaderMsgID, id) // a generated id names the dead letter too
	wait := 100 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(hard), opTimeout)
		err := ackflow.DeadLetter(ctx, e.o.JS, e.o.Payloads, e.o.Prefix, src, it.msg.Data(), hdr, reason, res.Status, res.Attempts)
		cancel()
		if err == nil {
			log.Debug().Int("status", res.Status).Msg("dead-lettered")
			return true
		}
		errLog(log.Warn(), err).Dur("retry_in", wait).Msg("dead-letter failed; retrying")
		if !sleep(stop, wait) {
			return false
		}
		wait = min(wait*2, 5*time.Second)
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

// publishResult sends res on the result subject and, when set, valid and
// allowed (replyAllowed), on replyTo (Bridge-Reply-To). Results are core
// NATS: a failure is logged.
func (e *Executor) publishResult(subject, replyTo string, res subjects.Result, log zerolog.Logger) {
	if replyTo != "" && !e.replyAllowed(replyTo, replyPathResult, log) {
		replyTo = ""
	}
	b, err := json.Marshal(claimcheck.FitResult(res, e.o.NC.MaxPayload()))
	if err != nil {
		log.Error().Err(err).Msg("result not encodable")
		return
	}
	for _, s := range []string{subject, replyTo} {
		if s == "" {
			continue
		}
		if !validPublishSubject(s) {
			log.Warn().Str("reply_to", s).Msg("Bridge-Reply-To is not a valid subject; result not sent there")
			continue
		}
		m := nats.NewMsg(s)
		m.Header.Set(subjects.HeaderContentType, "application/json")
		m.Data = b
		if err := e.o.NC.PublishMsg(m); err != nil {
			log.Warn().Err(err).Str("to", s).Msg("result not published")
		}
		if replyTo == subject {
			break
		}
	}
}

// validPublishSubject reports whether s is a literal subject: non-empty
// tokens, no wildcards or white space.
func validPublishSubject(s string) bool {
	if s == "" || len(s) > 1024 {
		return false
	}
	for tok := range strings.SplitSeq(s, ".") {
		if tok == "" || tok == "*" || tok == ">" {
			return false
		}
		if strings.ContainsAny(tok, " \t\r\n") {
			return false
		}
	}
	return true
}

// sleep waits d, or returns false when stop ends first.
func sleep(stop context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-stop.Done():
		return false
	}
}
