package bridge

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/rs/zerolog"

	"github.com/bridgeworks/bridge/connector"
)

// Backoff is the supervisor's reconnect policy: exponential from Initial to
// Max with equal jitter; a platform's own wait (Retry-After) is honoured when
// longer, up to the connection's retry_after_max.
type Backoff struct {
	Initial time.Duration // default 1s
	Max     time.Duration // default 60s
}

// delay is the wait before reconnect number attempt+1 after err; asked is
// the platform's Retry-After (0 when it set none), honoured up to
// retryAfterMax.
func (b Backoff) delay(attempt int, err error, retryAfterMax time.Duration) (d, asked time.Duration) {
	if b.Initial == 0 {
		b.Initial = time.Second
	}
	if b.Max == 0 {
		b.Max = time.Minute
	}
	d = b.Initial << min(attempt, 20)
	if d > b.Max || d <= 0 {
		d = b.Max
	}
	d = d/2 + rand.N(d/2+1)
	asked = connector.RetryAfter(err)
	wait, _ := connector.CapWait(asked, retryAfterMax)
	return max(d, wait), asked
}

// supervisor runs one connection: connect with backoff, pump events through
// the publisher, reconnect on loss, stop on a permanent error.
type supervisor struct {
	name     string
	platform string
	c        connector.Connector
	pub      *publisher
	board    *statusBoard
	m        *metrics
	log      zerolog.Logger
	backoff  Backoff
	// retryAfterMax caps a platform's Retry-After before a reconnect.
	retryAfterMax time.Duration
	drain         time.Duration // how long in-flight events may take to settle at shutdown
}

func (s *supervisor) drainCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), s.drain)
}

// run returns nil when ctx ends, or the permanent error that stopped the
// connection (after recording it on the status board).
func (s *supervisor) run(ctx context.Context) error {
	attempt := 0
	for {
		s.board.set(s.name, StateConnecting, nil)
		err := s.c.Connect(ctx)
		if err == nil {
			attempt = 0
			s.board.set(s.name, StateConnected, nil)
			s.log.Info().Msg("connected")
			s.pub.sys(ctx, "connected", map[string]any{})
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
			st := StateFailed
			if errors.Is(err, connector.ErrSuperseded) {
				st = StateSuperseded
			}
			s.board.set(s.name, st, err)
			s.log.Error().Err(err).Str("state", string(st)).Msg("connection stopped for good; not reconnecting")
			ev := "disconnected"
			if st == StateSuperseded {
				ev = "superseded"
			}
			s.pub.sys(context.WithoutCancel(ctx), ev, map[string]any{"reason": err.Error(), "permanent": true})
			return err
		}
		wait, asked := s.backoff.delay(attempt, err, s.retryAfterMax)
		attempt++
		s.board.set(s.name, StateReconnecting, err)
		if asked > 0 {
			s.platformWait(err, asked, wait)
		}
		s.m.reconnects.WithLabelValues(s.name).Inc()
		s.log.Warn().Err(err).Dur("retry_in", wait).Msg("connection lost; reconnecting")
		s.pub.sys(ctx, "disconnected", map[string]any{"reason": errString(err)})
		s.pub.sys(ctx, "reconnecting", map[string]any{"in_ms": wait.Milliseconds(), "attempt": attempt})
		select {
		case <-ctx.Done():
			s.board.set(s.name, StateStopped, nil)
			return nil
		case <-time.After(wait):
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
