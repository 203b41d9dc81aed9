package agentconnectemu

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"
)

// The scripted AI (agentconnect.md §4.3, §4.4): each agent answers with
// Options.Reply, spends tokens against a budget per window and cools
// down past it, and ends a conversation with stop at MaxTurns.

type outcome int

const (
	outReply    outcome = iota
	outCooldown         // in cooldown: answer with a cooldown frame
	outStop             // max turns: answer with stop
	outIgnore           // the conversation ended: no answer
)

type injection struct {
	from, to, content, typ string
}

// maxInbox bounds the injected messages an agent_agent session queues.
const maxInbox = 64

// receiveLocked is agent a receiving content from partner.
func (s *Server) receiveLocked(a *aiAgent, partner, typ, content string, now time.Time) (outcome, string) {
	if typ == "stop" || strings.Contains(content, "__EXIT__") {
		a.ended[partner] = true
		return outIgnore, ""
	}
	if a.ended[partner] {
		return outIgnore, ""
	}
	if now.Sub(a.windowStart) >= s.opts.TokenWindow {
		a.windowStart, a.tokens = now, 0
	}
	if now.Before(a.cooldownUntil) {
		return outCooldown, ""
	}
	a.turns[partner]++
	if s.opts.MaxTurns > 0 && a.turns[partner] >= s.opts.MaxTurns {
		a.ended[partner] = true
		return outStop, ""
	}
	reply := s.opts.Reply(content)
	a.tokens += tokenCost(content) + tokenCost(reply)
	if s.opts.TokenBudget > 0 && a.tokens > s.opts.TokenBudget {
		a.cooldownUntil = a.windowStart.Add(s.opts.TokenWindow)
	}
	return outReply, reply
}

func tokenCost(s string) int { return (len(s) + 3) / 4 }

func cooldownFrame(a *aiAgent, partner string, now time.Time) Frame {
	rem := a.cooldownUntil.Sub(now).Seconds()
	return Frame{Type: "cooldown", Sender: a.id, Receiver: partner,
		Content:  fmt.Sprintf("I am in cooldown for %d seconds. Please try again later.", int(math.Ceil(rem))),
		Metadata: map[string]any{"cooldown_remaining": math.Round(rem*1000) / 1000}}
}

func stopFrame(a *aiAgent, partner string) Frame {
	return Frame{Type: "stop", Content: stopText, Sender: a.id, Receiver: partner,
		Metadata: map[string]any{"reason": "max_turns_reached"}}
}

// storeReplyLocked broadcasts an AI reply and counts it; reaching
// MaxMessages ends the session with its notice. It reports whether the
// session is still live.
func (s *Server) storeReplyLocked(sess *session, f Frame) bool {
	s.broadcastLocked(sess, f)
	sess.messages++
	if sess.live() && sess.messages >= s.opts.MaxMessages {
		s.endSessionLocked(sess, endMessageCap, NoticeMaxCountClosed)
	}
	return sess.live()
}

// humanTurn delivers a human's message to the session's AI and waits
// for the answer up to ReplyTimeout, as the handler does.
func (s *Server) humanTurn(c *conn, sess *session, f Frame) {
	s.mu.Lock()
	a := sess.agents[0]
	now := time.Now()
	out, reply := s.receiveLocked(a, sess.humanID, f.Type, f.Content, now)
	switch out {
	case outStop:
		s.broadcastLocked(sess, stopFrame(a, sess.humanID))
		s.mu.Unlock()
		return
	case outCooldown:
		s.broadcastLocked(sess, cooldownFrame(a, sess.humanID, now))
	}
	s.mu.Unlock()

	if out != outReply || s.opts.ReplyDelay >= s.opts.ReplyTimeout {
		if s.wait(c.ctx, s.opts.ReplyTimeout) {
			s.mu.Lock()
			s.systemLocked(sess, NoticeSlowAI)
			s.mu.Unlock()
		}
		return
	}
	if !s.wait(c.ctx, s.opts.ReplyDelay) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.storeReplyLocked(sess, Frame{Type: "text", Content: reply, Sender: a.id, Receiver: sess.humanID,
		Metadata: map[string]any{"provider": a.provider, "model": a.model}})
}

// wait sleeps d unless ctx ends or the Server closes first; it reports
// whether d passed.
func (s *Server) wait(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil && s.ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-s.ctx.Done():
		return false
	}
}

// injectLocked queues a client frame into an agent_agent conversation:
// sender and receiver as given, else agent 1 first and then whichever
// did not speak last (§4.3).
func (s *Server) injectLocked(c *conn, sess *session, f Frame) {
	from, to := f.Sender, f.Receiver
	if from == "" || to == "" {
		i := 0
		if sess.lastSpeaker == 0 {
			i = 1
		}
		from, to = sess.agents[i].id, sess.agents[1-i].id
	}
	fa, ta := sess.agentByID(from), sess.agentByID(to)
	errorf := func(msg string) {
		c.enqueue(Frame{Type: "error", Content: "Failed to process message: " + msg, Timestamp: isoTime(time.Now())}.encode())
	}
	if fa == nil || ta == nil || fa == ta {
		errorf(fmt.Sprintf("sender and receiver must be the two agents of the session (%s, %s)",
			sess.agents[0].id, sess.agents[1].id))
		return
	}
	select {
	case sess.inbox <- injection{from: from, to: to, content: f.Content, typ: f.Type}:
		sess.lastSpeaker = s.agentIndex(sess, fa)
	default:
		errorf(fmt.Sprintf("more than %d messages are waiting for the agents", maxInbox))
	}
}

func (s *Server) agentIndex(sess *session, a *aiAgent) int {
	if sess.agents[0] == a {
		return 0
	}
	return 1
}

// agentWorker runs the agent_agent exchanges of one session, one at a
// time: each injected message bounces between the two agents, every
// answer broadcast, until one stops (max turns), cools down (not
// forwarded to an AI receiver), or the session ends.
func (s *Server) agentWorker(sess *session) {
	defer s.wg.Done()
	for {
		select {
		case <-sess.work.Done():
			return
		case msg := <-sess.inbox:
			s.exchange(sess.work, sess, msg)
		}
	}
}

func (s *Server) exchange(ctx context.Context, sess *session, msg injection) {
	for {
		s.mu.Lock()
		to, from := sess.agentByID(msg.to), sess.agentByID(msg.from)
		out, reply := s.receiveLocked(to, msg.from, msg.typ, msg.content, time.Now())
		if out == outStop {
			s.broadcastLocked(sess, stopFrame(to, from.id))
		}
		s.mu.Unlock()
		if out != outReply || !s.wait(ctx, s.opts.ReplyDelay) {
			return
		}
		s.mu.Lock()
		sess.lastSpeaker = s.agentIndex(sess, to)
		live := s.storeReplyLocked(sess, Frame{Type: "text", Content: reply, Sender: to.id, Receiver: from.id,
			Metadata: map[string]any{"provider": to.provider, "model": to.model,
				"conversation_type": "agent_agent", "original_type": "response"}})
		s.mu.Unlock()
		if !live {
			return
		}
		msg = injection{from: to.id, to: from.id, content: reply, typ: "text"}
	}
}
