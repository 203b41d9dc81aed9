package bridge

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/rs/zerolog"

	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/internal/phoenix"
	"github.com/bridgeworks/bridge/retry"
	"github.com/bridgeworks/bridge/subjects"
)

// supervisor runs one connection: connect, pump events through the
// publisher, reconnect on loss, wait longer after a supersede or a refusal
// (see run).
//
// Reconnects have one owner per failure. A connector that keeps its
// session across a socket loss (Band: the Phoenix socket redials and
// rejoins, the rooms' catch-up state stays) redials by itself and reports
// the loss and the recovery as lifecycle events; the supervisor does not
// wait for those. The supervisor waits only when there is no session: a
// failed Connect, or a session that ended (Receive failed). Both use the
// connection's reconnect policy (reconnect_initial, reconnect_max, given
// to the connector in connector.Config.Reconnect), so one setting governs
// every reconnect wait and two waits never stack for one failure. The
// connector keeps its socket because a reconnect through the supervisor
// would repeat the whole session set-up (key check, every room's join and
// catch-up) on every blip.
type supervisor struct {
	name      string
	platform  string
	c         connector.Connector
	pub       *publisher
	board     *statusBoard
	m         *metrics
	log       *zerolog.Logger // the connection's, shared with its publisher (a copy is 112 bytes)
	reconnect retry.Policy
	// retryAfterMax caps a platform's Retry-After before a reconnect.
	retryAfterMax time.Duration
	drain         time.Duration // how long in-flight events may take to settle at shutdown
	cooloff       time.Duration // supersede_cooloff
	refusedMax    time.Duration // refused_retry_max

	// While the connection is parked (see runner): runConnection's lease
	// and run's session, for the goroutine that goes on: its reconnect
	// waits, or parkedFresh when both had no failure (the usual idle
	// session, which then keeps no backoffs).
	parked      *leaseTerm
	parkedSess  *parkedSession
	parkedFresh bool
}

// drainCtx bounds the settling of in-flight events when a session ends. A
// connection whose lease is no longer valid here gets no drain: its
// platform session must close before another process's starts (the
// events in flight are caught up by the new holder), so the drain never
// keeps a stale holder's socket open.
func (s *supervisor) drainCtx() (context.Context, context.CancelFunc) {
	if s.pub.fence != nil && s.pub.fence() != nil {
		return context.WithTimeout(context.Background(), 0)
	}
	return context.WithTimeout(context.Background(), s.drain)
}

// transition records a session-level change: the status board and the
// lifecycle event come from this one place, each once.
func (s *supervisor) transition(ctx context.Context, st State, err error, l subjects.Lifecycle, data map[string]any) {
	s.board.set(s.name, st, err)
	if l != "" {
		s.pub.sys(ctx, l, data)
	}
}

// run returns nil when ctx ends; until then it keeps the connection up.
//
// Nothing stops a connection for good: a wrong key gets rotated, a foreign
// session goes away, a platform comes back. What differs is the wait:
//
//   - a lost session or a failed connect (the platform unreachable, 5xx,
//     429): the reconnect policy, reconnect_initial doubling to
//     reconnect_max, or longer when the platform asks (Retry-After, up to
//     retry_after_max); state reconnecting;
//   - another session of the same identity took over (superseded):
//     supersede_cooloff plus up to half of it at random, so two processes
//     using one identity trade it at most once per cool-off instead of
//     evicting each other in a loop (Band keeps one socket per agent);
//     state superseded;
//   - the platform refused the credentials (401/403; state refused) or the
//     connect failed in a way a quick retry does not cure (state failed):
//     reconnect_max doubling (with jitter) to refused_retry_max. The
//     connector reads its secrets again at every connect, so a rotated key
//     file heals at the next try.
//
// The state, the error and the time of the next try are on /status and in
// the metrics for the whole wait.
//
// It returns errParked when the session idles and its goroutine may end
// (see runner); the next call goes on with the session.
func (s *supervisor) run(ctx context.Context) error {
	var bo, long *retry.Backoff
	resume := s.parkedSess != nil || s.parkedFresh
	if s.parkedSess != nil {
		bo, long = s.parkedSess.bo, s.parkedSess.long
	} else {
		bo = s.reconnect.Start()
		long = retry.Policy{Initial: s.reconnect.Max, Max: max(s.refusedMax, s.reconnect.Max)}.Start()
	}
	s.parkedSess, s.parkedFresh = nil, false
	for {
		var err error
		if !resume { // a parked session goes on; otherwise connect first
			s.setRetryAt(time.Time{})
			s.board.set(s.name, StateConnecting, nil)
			if err = s.c.Connect(ctx); err == nil {
				bo.Reset()
				long.Reset()
				s.log.Info().Msg("connected")
				s.transition(ctx, StateConnected, nil, subjects.LifecycleConnected, map[string]any{})
			}
		}
		resume = false
		if err == nil {
			err = s.pub.run(ctx, s.drainCtx, s.c)
		}
		if errors.Is(err, errParked) {
			if bo.Failures() == 0 && long.Failures() == 0 {
				s.parkedFresh = true // as new: the next run starts them again
			} else {
				s.parkedSess = &parkedSession{bo: bo, long: long}
			}
			return errParked
		}
		cctx, cancel := s.drainCtx()
		if cerr := s.c.Close(cctx); cerr != nil {
			s.log.Warn().Err(cerr).Msg("close")
		}
		cancel()
		if ctx.Err() != nil {
			s.board.set(s.name, StateStopped, nil)
			return nil
		}
		var wait time.Duration
		var attempt int
		switch st := classify(err); st {
		case StateSuperseded:
			wait = s.cooloff + rand.N(s.cooloff/2+1)
			attempt = 1
			s.log.Error().Err(err).Int64("retry_in_ms", wait.Milliseconds()).
				Msg("another session of this identity took over; taking it back after the cool-off (stop the other one, or this one)")
			s.setRetryAt(time.Now().Add(wait)) // on /status with the state, never after it
			s.transition(context.WithoutCancel(ctx), st, err, subjects.LifecycleSuperseded,
				map[string]any{"reason": err.Error(), "retry_in_ms": wait.Milliseconds()})
		case StateRefused, StateFailed:
			wait = long.Next()
			attempt = long.Failures()
			msg := "the platform refused the connection; retrying with long waits (check the key)"
			if st == StateFailed {
				msg = "connect failed in a way a quick retry does not cure; retrying with long waits"
			}
			s.log.Error().Err(err).Str("state", string(st)).Int64("retry_in_ms", wait.Milliseconds()).Int("attempt", attempt).Msg(msg)
			s.setRetryAt(time.Now().Add(wait))
			s.transition(context.WithoutCancel(ctx), st, err, subjects.LifecycleDisconnected,
				map[string]any{"reason": err.Error(), "permanent": true, "retry_in_ms": wait.Milliseconds()})
		default:
			wait = bo.Next()
			attempt = bo.Failures()
			asked := connector.RetryAfter(err)
			if capped, _ := connector.CapWait(asked, s.retryAfterMax); capped > wait {
				wait = capped
			}
			if asked > 0 {
				s.platformWait(err, asked, wait)
			}
			s.m.count(s.name, cReconnects)
			s.log.Warn().Err(err).Int64("retry_in_ms", wait.Milliseconds()).Msg("connection lost; reconnecting")
			s.setRetryAt(time.Now().Add(wait))
			s.transition(ctx, StateReconnecting, err, subjects.LifecycleDisconnected, map[string]any{"reason": errString(err)})
		}
		s.pub.sys(ctx, subjects.LifecycleReconnecting, map[string]any{"in_ms": wait.Milliseconds(), "attempt": attempt})
		if !retry.Sleep(ctx, wait) {
			s.setRetryAt(time.Time{})
			s.board.set(s.name, StateStopped, nil)
			return nil
		}
	}
}

func (s *supervisor) setRetryAt(at time.Time) {
	s.board.retryAt(s.name, at)
	s.m.setRetryAt(s.name, at)
}

// classify names the state a failed session or connect leaves the
// connection in: superseded, refused (the platform refused the
// credentials: 401 or 403, on a REST call or on the socket's upgrade),
// failed (any other error the connector marked permanent) or reconnecting.
func classify(err error) State {
	switch {
	case errors.Is(err, connector.ErrSuperseded):
		return StateSuperseded
	case refusedStatus(err):
		return StateRefused
	case connector.IsPermanent(err):
		return StateFailed
	}
	return StateReconnecting
}

func refusedStatus(err error) bool {
	status := 0
	var pe *connector.PlatformError
	var ue *phoenix.UpgradeError
	switch {
	case errors.As(err, &pe):
		status = pe.Status
	case errors.As(err, &ue):
		status = ue.Status
	}
	return status == http.StatusUnauthorized || status == http.StatusForbidden
}

// platformWait shows a reconnect wait the platform asked for on /status,
// and logs it at warn level when retry_after_max cut it.
func (s *supervisor) platformWait(err error, asked, wait time.Duration) {
	route := "connect"
	reason := "asked to wait on connect"
	var pe *connector.PlatformError
	if errors.As(err, &pe) {
		reason = connector.WaitReason(pe.Status, route)
	}
	now := time.Now()
	s.board.wait(s.name, connector.Wait{Since: now, Until: now.Add(wait), Asked: asked, Reason: reason})
	if asked > wait {
		s.log.Warn().Str("route", route).Int64("asked_wait_ms", asked.Milliseconds()).Int64("capped_wait_ms", wait.Milliseconds()).
			Msg("platform asked for a wait longer than retry_after_max; waiting retry_after_max instead")
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
