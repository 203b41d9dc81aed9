package bridge

import (
	"context"
	"errors"
	"time"

	"github.com/rs/zerolog"

	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/retry"
	"github.com/bridgeworks/bridge/subjects"
)

// supervisor runs one connection: connect, pump events through the
// publisher, reconnect on loss, stop on a permanent error.
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
	log       zerolog.Logger
	reconnect retry.Policy
	// retryAfterMax caps a platform's Retry-After before a reconnect.
	retryAfterMax time.Duration
	drain         time.Duration // how long in-flight events may take to settle at shutdown
}

func (s *supervisor) drainCtx() (context.Context, context.CancelFunc) {
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

// run returns nil when ctx ends, or the permanent error that stopped the
// connection (after recording it on the status board).
func (s *supervisor) run(ctx context.Context) error {
	bo := s.reconnect.Start()
	for {
		s.board.set(s.name, StateConnecting, nil)
		err := s.c.Connect(ctx)
		if err == nil {
			bo.Reset()
			s.log.Info().Msg("connected")
			s.transition(ctx, StateConnected, nil, subjects.LifecycleConnected, map[string]any{})
			err = s.pub.run(ctx, s.drainCtx, s.c)
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
		if connector.IsPermanent(err) {
			st, ev := StateFailed, subjects.LifecycleDisconnected
			if errors.Is(err, connector.ErrSuperseded) {
				st, ev = StateSuperseded, subjects.LifecycleSuperseded
			}
			s.log.Error().Err(err).Str("state", string(st)).Msg("connection stopped for good; not reconnecting")
			s.transition(context.WithoutCancel(ctx), st, err, ev, map[string]any{"reason": err.Error(), "permanent": true})
			return err
		}
		wait := bo.Next()
		asked := connector.RetryAfter(err)
		if capped, _ := connector.CapWait(asked, s.retryAfterMax); capped > wait {
			wait = capped
		}
		if asked > 0 {
			s.platformWait(err, asked, wait)
		}
		s.m.reconnects.WithLabelValues(s.name).Inc()
		s.log.Warn().Err(err).Dur("retry_in", wait).Msg("connection lost; reconnecting")
		s.transition(ctx, StateReconnecting, err, subjects.LifecycleDisconnected, map[string]any{"reason": errString(err)})
		s.pub.sys(ctx, subjects.LifecycleReconnecting, map[string]any{"in_ms": wait.Milliseconds(), "attempt": bo.Failures()})
		if !retry.Sleep(ctx, wait) {
			s.board.set(s.name, StateStopped, nil)
			return nil
		}
	}
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
		s.log.Warn().Str("route", route).Dur("asked_wait", asked).Dur("capped_wait", wait).
			Msg("platform asked for a wait longer than retry_after_max; waiting retry_after_max instead")
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
