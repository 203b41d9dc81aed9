package cmdexec

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nuid"
	"github.com/rs/zerolog"

	"github.com/bridgeworks/bridge/ackflow"
	"github.com/bridgeworks/bridge/claimcheck"
	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/retry"
	"github.com/bridgeworks/bridge/subjects"
)

// outcome is how an execution ended. done is false when shutdown cut it
// short; retryIn is then what was left of a retry wait.
type outcome struct {
	res      subjects.Result
	done     bool
	retryIn  time.Duration
	attempts int
	ref      string // the platform record this execution created, to claim
}

// execute runs cmd until it succeeds, fails for good or the policy gives
// up. Attempts run under hard (cancelled only at the drain deadline); waits
// between attempts end early when stop ends. A room held by an earlier
// command's cooldown ([connector.HoldRoom]) is waited for first.
func (e *Executor) execute(stop, hard context.Context, cmd connector.Command, log zerolog.Logger) outcome {
	if left, ok := e.holds.wait(stop, cmd.Room); !ok {
		return outcome{retryIn: left}
	}
	if rc, ok := e.exec.(connector.Reconciler); ok && cmd.MaybeExecuted {
		resp, found, err := e.reconcile(hard, rc, cmd)
		switch {
		case err != nil:
			errLog(log.Warn(), err).Msg("cannot tell whether a crashed run executed this command; executing it")
		case found:
			log.Info().Msg("a crashed run had executed this command; not executing it again")
			return outcome{res: okResult(cmd, resp, 0), done: true}
		}
	}
	for attempt := 1; ; attempt++ {
		if e.fence != nil {
			if err := e.fence(); err != nil {
				// Another process may hold the connection now: hand it
				// back unexecuted, as at a drain.
				errLog(log.Warn(), err).Msg("command not executed here: lease no longer valid")
				return outcome{attempts: attempt - 1}
			}
		}
		end := e.m.attempt(cmd.Name)
		resp, err := e.call(hard, cmd)
		end()
		if err == nil {
			return outcome{res: okResult(cmd, resp, attempt), done: true, ref: resp.Ref}
		}
		if hard.Err() != nil && !connector.WasSent(err) {
			// Cut short by the drain deadline: handed back and run again
			// later. A call that may have reached the platform is not: it
			// ends here with an unknown outcome, like any Sent failure.
			return outcome{attempts: attempt}
		}
		d := ackflow.Decide(err, attempt, e.o.Policy)
		if d.Action != ackflow.ActionRetry {
			if d.Hold > 0 {
				e.holds.hold(cmd.Room, d.Hold)
				log.Info().Int64("hold_ms", d.Hold.Milliseconds()).Msg("platform asked the room to rest; its next command waits")
			}
			return outcome{res: failResult(cmd, err, d, attempt), done: true}
		}
		e.m.outcome(cmd.Name, outcomeRetried)
		if d.PlatformWait > d.Delay {
			errLog(log.Warn(), err).Str("route", cmd.Name).Int64("asked_wait_ms", d.PlatformWait.Milliseconds()).Int64("capped_wait_ms", d.Delay.Milliseconds()).
				Msg("platform asked for a wait longer than command_backoff_max or retry_after_max; retrying sooner")
		}
		errLog(log.Debug(), err).Int("attempt", attempt).Int64("retry_in_ms", d.Delay.Milliseconds()).Msg("transient failure; retrying")
		if stop.Err() != nil {
			return outcome{retryIn: d.Delay, attempts: attempt}
		}
		due := time.Now().Add(d.Delay)
		if !retry.Sleep(stop, d.Delay) {
			return outcome{retryIn: max(time.Until(due), 0), attempts: attempt}
		}
	}
}

// call makes one attempt: ExecuteStream when the platform streams (its
// events published before the result, see stream.go), else Execute.
func (e *Executor) call(ctx context.Context, cmd connector.Command) (connector.Response, error) {
	if se, ok := e.exec.(connector.StreamExecutor); ok {
		return se.ExecuteStream(ctx, cmd, e.emitter(ctx, cmd))
	}
	return e.exec.Execute(ctx, cmd)
}

// Do executes cmd now, outside the durable stream, with the same in-process
// retries as durable commands, and returns its result; it never fails
// otherwise. A cmd.ID makes it idempotent: the result is stored, and when
// cmd.MaybeExecuted says an earlier run may have executed it, an id already
// executed (by Do or by the durable path) returns the stored result without
// executing. Without
// an ID one is generated and nothing is stored. When ctx ends first the
// result is ok:false with code "unavailable".
func (e *Executor) Do(ctx context.Context, cmd connector.Command) subjects.Result {
	remember := cmd.ID != ""
	if !remember {
		cmd.ID = nuid.Next()
	}
	log := e.log.With().Str("command", cmd.Name).Str("id", cmd.ID).Logger()
	args, err := normalizeArgs(cmd.Args)
	if err == nil && !validName(cmd.Name) {
		err = connector.BadRequest("command", "%q is not a command name", cmd.Name)
	}
	if err != nil {
		e.m.outcome(cmd.Name, outcomeBadRequest)
		return badRequestResult(cmd, err)
	}
	cmd.Args = args
	if remember && cmd.MaybeExecuted {
		if res, found, err := e.lookup(ctx, cmd.ID); err != nil {
			errLog(log.Warn(), err).Msg("executed-id lookup failed; executing without the idempotency check")
		} else if found {
			e.m.outcome(cmd.Name, outcomeDuplicate)
			return res
		}
	}
	traced, endSpan := e.startSpan(ctx, nil, cmd)
	out := e.execute(traced, traced, cmd, log)
	endSpan(out.res)
	if !out.done {
		return subjects.Result{CommandID: cmd.ID, Command: cmd.Name, Attempts: out.attempts,
			Error: &subjects.Error{Code: subjects.ErrCodeUnavailable, Message: "not finished: " + errText(ctx), Retryable: true}}
	}
	out.res = claimcheck.FitResult(out.res, e.o.NC.MaxPayload()) // stored and returned alike
	e.count(out.res, log)
	if remember {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
		defer cancel()
		if err := e.remember(sctx, cmd.ID, out.ref, out.res); err != nil {
			errLog(log.Warn(), err).Msg("executed id not stored")
		}
	}
	return out.res
}

func errText(ctx context.Context) string {
	if err := context.Cause(ctx); err != nil {
		return err.Error()
	}
	return "stopped"
}

// count records a final result in metrics and logs failures.
func (e *Executor) count(res subjects.Result, log zerolog.Logger) {
	switch {
	case res.OK:
		e.m.outcome(res.Command, outcomeOK)
		log.Debug().Int("status", res.Status).Int("attempts", res.Attempts).Msg("command executed")
	case res.Error != nil && res.Error.Code == subjects.ErrCodeBadRequest:
		e.m.outcome(res.Command, outcomeBadRequest)
		log.Info().Int("status", res.Status).Msg("bad request")
	default:
		e.m.outcome(res.Command, outcomeFailed)
		code := ""
		if res.Error != nil {
			code = res.Error.Code
		}
		log.Warn().Int("status", res.Status).Str("code", code).Int("attempts", res.Attempts).Msg("command failed")
	}
}

func okResult(cmd connector.Command, resp connector.Response, attempts int) subjects.Result {
	status := resp.Status
	if status == 0 {
		status = 200
	}
	return subjects.Result{CommandID: cmd.ID, Command: cmd.Name, OK: true, Status: status, Data: rawJSON(resp.Data), Attempts: attempts}
}

// failResult is the result of a command given up on after attempts.
func failResult(cmd connector.Command, err error, d ackflow.Decision, attempts int) subjects.Result {
	res := subjects.Result{CommandID: cmd.ID, Command: cmd.Name, Attempts: attempts}
	var rq *connector.RequestError
	var pe *connector.PlatformError
	isPE := errors.As(err, &pe)
	switch {
	case errors.As(err, &rq):
		return badRequestResult(cmd, rq)
	case d.Reason == ackflow.ReasonUnknownOutcome:
		res.Error = &subjects.Error{Code: subjects.ErrCodeUnknownOutcome,
			Message: "the call may have reached the platform; not sent again: " + err.Error()}
	case d.Reason == ackflow.ReasonHoldRoom:
		code := subjects.ErrCodeUnavailable
		if isPE && pe.Code != "" {
			code = pe.Code
		}
		res.Error = &subjects.Error{Code: code, Message: fmt.Sprintf("%v (the room rests %s)", err, d.Hold),
			Retryable: true, RetryAfterMs: d.Hold.Milliseconds()}
	case d.Reason == ackflow.ReasonExhausted:
		res.Error = &subjects.Error{Code: subjects.ErrCodeUnavailable, Message: ackflow.ReasonExhausted + ": " + err.Error(), Retryable: true}
	case isPE:
		code, msg := pe.Code, pe.Message
		if code == "" {
			code = subjects.ErrCodePlatform
		}
		if msg == "" {
			msg = pe.Error()
		}
		res.Error = &subjects.Error{Code: code, Message: msg, Retryable: pe.Retryable()}
	default:
		res.Error = &subjects.Error{Code: subjects.ErrCodePlatform, Message: err.Error()}
	}
	if isPE {
		res.Status = pe.Status
		res.Data = rawJSON(pe.Data)
	}
	res.Attempts = attempts
	return res
}

// badRequestResult answers bad input; the message names the field.
func badRequestResult(cmd connector.Command, err error) subjects.Result {
	return subjects.Result{CommandID: cmd.ID, Command: cmd.Name, Status: 400, Attempts: 1,
		Error: &subjects.Error{Code: subjects.ErrCodeBadRequest, Message: err.Error()}}
}

// rawJSON keeps b as the result's data when it is JSON, and as a JSON
// string otherwise (a platform answering text), so the result always encodes.
func rawJSON(b []byte) json.RawMessage {
	if len(bytes.TrimSpace(b)) == 0 {
		return nil
	}
	if json.Valid(b) {
		return json.RawMessage(b)
	}
	s, _ := json.Marshal(string(b))
	return s
}

// normalizeArgs accepts a JSON object, or nothing (no arguments, as {}).
func normalizeArgs(b []byte) (json.RawMessage, error) {
	t := bytes.TrimSpace(b)
	if len(t) == 0 || string(t) == "null" {
		return json.RawMessage("{}"), nil
	}
	if t[0] != '{' || !json.Valid(t) {
		return nil, connector.BadRequest("body", "not a JSON object")
	}
	return json.RawMessage(b), nil
}

// validName reports whether name is a command token of the contract.
func validName(name string) bool {
	if name == "" || len(name) > 128 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '~') {
			return false
		}
	}
	return true
}

// errLog adds err to ev without its text when the text may carry platform
// content: a PlatformError logs status and code only, a RequestError its
// field.
func errLog(ev *zerolog.Event, err error) *zerolog.Event {
	var pe *connector.PlatformError
	var rq *connector.RequestError
	switch {
	case errors.As(err, &pe):
		return ev.Int("status", pe.Status).Str("code", pe.Code).Int64("platform_retry_after_ms", pe.RetryAfter.Milliseconds())
	case errors.As(err, &rq):
		return ev.Str("field", rq.Field)
	}
	return ev.Str("error", fmt.Sprint(err))
}
