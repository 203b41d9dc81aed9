package phoenix

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

type chanState uint8

const (
	stateClosed  chanState = iota // not registered
	stateJoining                  // a phx_join is in flight
	stateJoined                   // joined on the current connection
	stateErrored                  // must be rejoined (connection lost, phx_error, phx_close, timeout)
)

// Channel is one topic on a Socket. Create it with Socket.Channel; it
// takes part in routing and automatic rejoins only between a successful
// Join and Leave (or an error reply to a rejoin).
type Channel struct {
	s         *Socket
	topic     string
	params    any
	onMessage func(event string, payload json.RawMessage)

	// Guarded by s.mu; the small fields first (128 bytes in all).
	state       chanState
	manual      bool  // a Join call drives the join; automatic rejoins keep out
	leftHolders int32 // the calls holding left
	joinRef     string
	tries       int    // rejoins since the last successful join, for RejoinDelays
	reg         uint64 // the current registration, a number from Socket.refs; 0 while not registered
	// left is closed when registration reg ends. It is made for the calls
	// waiting on the registration (holdLeftLocked) and dropped when the
	// last gives it back: an idle joined channel keeps none.
	left    chan struct{}
	payload json.RawMessage // encoded params, reused by rejoins
	// waiting is closed (and cleared) when the channel becomes joined or is
	// unregistered; made by WaitJoined, nil while nobody waits.
	waiting chan struct{}
}

// Channel returns a channel for topic; nothing is sent until Join. params
// is marshalled to the join payload (nil means {}); it must encode to a
// JSON object. onMessage (may be nil) receives every frame for the topic
// whose join_ref is null or the channel's current join_ref; frames with any
// other join_ref are stale and dropped (phoenix.js Channel.isMember). The
// protocol's own frames (every "phx_" event: replies, phx_error,
// phx_close) are handled here and never reach onMessage: they are not the
// application's events. onMessage runs on the reader
// goroutine in arrival order and may block: that is back-pressure, and
// heartbeats keep being sent meanwhile; it must not call Join, Leave or
// Push on the same socket and wait for their reply.
func (s *Socket) Channel(topic string, params any, onMessage func(event string, payload json.RawMessage)) *Channel {
	return &Channel{s: s, topic: topic, params: params, onMessage: onMessage}
}

// Topic returns the channel's topic.
func (c *Channel) Topic() string { return c.topic }

// Joined reports whether the channel is joined on the open connection.
func (c *Channel) Joined() bool {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	return c.state == stateJoined
}

// WaitJoined waits until the channel is joined on the open connection (a
// rejoin after a reconnect acknowledged, say). It returns ErrNotJoined if
// the channel is not registered (never joined, left, or its rejoin
// refused), or ctx's error.
func (c *Channel) WaitJoined(ctx context.Context) error {
	for {
		c.s.mu.Lock()
		switch {
		case c.state == stateJoined:
			c.s.mu.Unlock()
			return nil
		case c.reg == 0:
			c.s.mu.Unlock()
			return ErrNotJoined
		}
		if c.waiting == nil {
			c.waiting = make(chan struct{})
		}
		w := c.waiting
		c.s.mu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-w:
		}
	}
}

// wakeLocked wakes the WaitJoined callers: the channel was joined or
// unregistered.
func (c *Channel) wakeLocked() {
	if c.waiting != nil {
		close(c.waiting)
		c.waiting = nil
	}
}

// holdLeftLocked returns a channel closed when c's current registration
// ends, for a call that waits on it; the call gives it back with
// releaseLeft. s.mu is held.
func (c *Channel) holdLeftLocked() chan struct{} {
	if c.left == nil {
		c.left = make(chan struct{})
	}
	c.leftHolders++
	return c.left
}

// releaseLeft gives back a channel from holdLeftLocked; the last holder
// drops it (one the registration's end closed is already dropped).
func (c *Channel) releaseLeft(left chan struct{}) {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	if left != c.left {
		return
	}
	if c.leftHolders--; c.leftHolders == 0 {
		c.left = nil
	}
}

// JoinRef returns the join_ref of the latest join ("" before any).
func (c *Channel) JoinRef() string {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	return c.joinRef
}

// Join sends phx_join and returns the reply's response. It waits for the
// socket to be open (ctx bounds that wait) and then at most
// Options.JoinTimeout for the reply; if the connection drops meanwhile it
// waits for the next one and joins again. An error reply is a
// *ReplyError. On any error the channel is unregistered; on success it is
// rejoined automatically after every reconnect until Leave.
func (c *Channel) Join(ctx context.Context) (_ json.RawMessage, err error) {
	defer wrapErr(&err, "phoenix: join %s", c.topic)
	params, err := encodePayload(c.params)
	if err != nil {
		return nil, err
	}
	s := c.s
	reg, unreg, err := s.register(c, params)
	if err != nil {
		return nil, err
	}
	defer c.releaseLeft(unreg)
	joined := false
	defer func() {
		if !joined {
			s.mu.Lock()
			if c.reg == reg {
				s.unregisterLocked(c)
			}
			s.mu.Unlock()
		}
	}()
	for {
		lc, err := s.waitOpen(ctx, unreg)
		if err != nil {
			return nil, err
		}
		ref := s.nextRef()
		s.mu.Lock()
		if c.reg != reg {
			s.mu.Unlock()
			return nil, ErrLeft
		}
		c.joinRef = ref
		s.mu.Unlock()

		r, err := lc.request(ctx, Frame{JoinRef: &ref, Ref: &ref, Topic: c.topic, Event: EventJoin, Payload: params}, unreg)
		switch {
		case errors.Is(err, ErrNotConnected):
			continue // joined again on the next connection
		case errorsIsAny(err, ErrTimeout, context.Canceled, context.DeadlineExceeded):
			// Like phoenix.js: tell the server to drop a join it may still answer.
			_ = lc.sendFrame(Frame{JoinRef: &ref, Ref: strPtr(s.nextRef()), Topic: c.topic, Event: EventLeave})
			return nil, err
		case err != nil:
			return nil, err
		case r.status != "ok":
			return nil, &ReplyError{Status: r.status, Response: r.response}
		}

		s.mu.Lock()
		if c.reg != reg {
			s.mu.Unlock()
			return nil, ErrLeft
		}
		if lc.isClosing() {
			s.mu.Unlock()
			continue
		}
		c.state, c.manual, c.tries = stateJoined, false, 0
		c.wakeLocked()
		s.mu.Unlock()
		joined = true
		s.log.Debug().Str("topic", c.topic).Str("join_ref", ref).Msg("phoenix: joined")
		return r.response, nil
	}
}

// Leave sends phx_leave and unregisters the channel: no frames are
// delivered and no rejoin happens afterwards, even if the reply never
// comes. It waits at most Options.JoinTimeout for the reply; a lost
// connection counts as success (the server drops the channel with it).
// Leaving a channel that is not joined does nothing.
func (c *Channel) Leave(ctx context.Context) (err error) {
	defer wrapErr(&err, "phoenix: leave %s", c.topic)
	s := c.s
	s.mu.Lock()
	if s.chans[c.topic] != c {
		s.mu.Unlock()
		return nil
	}
	active := c.state == stateJoined || c.state == stateJoining
	joinRef, lc := c.joinRef, s.conn
	s.unregisterLocked(c)
	s.mu.Unlock()
	if !active || joinRef == "" || lc == nil || lc.isClosing() {
		return nil
	}
	ref := s.nextRef()
	r, err := lc.request(ctx, Frame{JoinRef: &joinRef, Ref: &ref, Topic: c.topic, Event: EventLeave}, nil)
	switch {
	case errors.Is(err, ErrNotConnected):
		return nil
	case err != nil:
		return err
	case r.status != "ok":
		return &ReplyError{Status: r.status, Response: r.response}
	}
	return nil
}

// Push sends event with payload (nil means {}; it must encode to a JSON
// object) on a joined channel and waits at most Options.JoinTimeout for
// the reply's response. A server that never replies makes Push return
// ErrTimeout although the frame was sent. An error reply is a
// *ReplyError; a full send queue is ErrSendQueueFull.
func (c *Channel) Push(ctx context.Context, event string, payload any) (_ json.RawMessage, err error) {
	defer wrapErr(&err, "phoenix: push %s %s", c.topic, event)
	if event == "" {
		return nil, errors.New("empty event")
	}
	p, err := encodePayload(payload)
	if err != nil {
		return nil, err
	}
	s := c.s
	s.mu.Lock()
	if s.chans[c.topic] != c || c.state != stateJoined || s.conn == nil {
		s.mu.Unlock()
		return nil, ErrNotJoined
	}
	lc, joinRef, unreg := s.conn, c.joinRef, c.holdLeftLocked()
	s.mu.Unlock()
	defer c.releaseLeft(unreg)
	ref := s.nextRef()
	r, err := lc.request(ctx, Frame{JoinRef: &joinRef, Ref: &ref, Topic: c.topic, Event: event, Payload: p}, unreg)
	if err != nil {
		return nil, err
	}
	if r.status != "ok" {
		return nil, &ReplyError{Status: r.status, Response: r.response}
	}
	return r.response, nil
}

// register adds c for a Join call: it returns the registration and a
// channel closed when it ends, which the caller gives back with
// releaseLeft.
func (s *Socket) register(c *Channel, payload json.RawMessage) (uint64, chan struct{}, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.isStopped() {
		return 0, nil, ErrStopped
	}
	if s.chans[c.topic] != nil {
		return 0, nil, ErrAlreadyJoined
	}
	c.state, c.manual, c.tries, c.joinRef = stateJoining, true, 0, ""
	c.reg = s.refs.Add(1)
	c.payload = payload
	s.chans[c.topic] = c
	return c.reg, c.holdLeftLocked(), nil
}

func (s *Socket) unregisterLocked(c *Channel) {
	if s.chans[c.topic] == c {
		delete(s.chans, c.topic)
	}
	c.reg = 0
	if c.left != nil {
		close(c.left)
		c.left, c.leftHolders = nil, 0
	}
	c.state, c.manual = stateClosed, false
	c.wakeLocked()
}

// dispatch routes one inbound frame; it runs on lc's reader goroutine.
func (s *Socket) dispatch(lc *liveConn, f Frame) {
	if f.Event == EventReply {
		if f.Ref != nil {
			if f.Topic == TopicPhoenix && lc.ackHeartbeat(*f.Ref) {
				return
			}
			if fn := lc.take(*f.Ref); fn != nil {
				fn(parseReply(f.Payload))
				return
			}
		}
		s.dropped.Add(1)
		s.log.Debug().Str("topic", f.Topic).Msg("phoenix: reply to unknown ref dropped")
		return
	}

	s.mu.Lock()
	c := s.chans[f.Topic]
	member := c != nil && (f.JoinRef == nil || *f.JoinRef == c.joinRef)
	if member && (f.Event == EventError || f.Event == EventClose) {
		s.channelErroredLocked(c, lc, f.Event)
	}
	s.mu.Unlock()
	if !member {
		s.dropped.Add(1)
		s.log.Debug().Str("topic", f.Topic).Str("event", f.Event).Msg("phoenix: frame for unknown topic or stale join_ref dropped")
		return
	}
	if c.onMessage != nil && !strings.HasPrefix(f.Event, "phx_") {
		lc.readerBusy.Store(true)
		c.onMessage(f.Event, f.Payload)
		lc.readerBusy.Store(false)
	}
}

func parseReply(payload json.RawMessage) reply {
	var p struct {
		Status   string          `json:"status"`
		Response json.RawMessage `json:"response"`
	}
	if err := json.Unmarshal(payload, &p); err != nil || p.Status == "" {
		return reply{status: "invalid", response: json.RawMessage("{}")}
	}
	if len(p.Response) == 0 {
		p.Response = json.RawMessage("{}")
	}
	return reply{status: p.Status, response: p.Response}
}

// channelErroredLocked handles phx_error / phx_close for a member frame:
// the channel is marked errored and rejoined after RejoinDelays (phoenix.js
// rejoins only on phx_error; a rejoin refused by the server unregisters
// the channel, so rejoining after phx_close too cannot loop for long).
func (s *Socket) channelErroredLocked(c *Channel, lc *liveConn, event string) {
	if c.manual {
		// A Join call is waiting for this join's reply; make it return.
		if fn := lc.take(c.joinRef); fn != nil {
			fn(reply{err: ErrChannelErrored})
		}
		return
	}
	if c.state != stateJoined && c.state != stateJoining {
		return
	}
	lc.take(c.joinRef) // a rejoin reply will never come now
	c.state = stateErrored
	s.log.Warn().Str("topic", c.topic).Str("event", event).Msg("phoenix: channel errored, rejoining")
	s.scheduleRejoinLocked(c, lc)
}

// channelsLostLocked marks every joined channel errored after the
// connection ended; the next connection rejoins them.
func (s *Socket) channelsLostLocked() {
	for _, c := range s.chans {
		if !c.manual && (c.state == stateJoined || c.state == stateJoining) {
			c.state = stateErrored
		}
		c.tries = 0
	}
}

// rejoinAllLocked queues a rejoin for every errored channel at once, so
// none waits for another, and returns how many.
func (s *Socket) rejoinAllLocked(lc *liveConn) int {
	n := 0
	for _, c := range s.chans {
		if !c.manual && c.state == stateErrored {
			s.rejoinLocked(c, lc)
			n++
		}
	}
	return n
}

func (s *Socket) scheduleRejoinLocked(c *Channel, lc *liveConn) {
	d := s.opts.RejoinDelays[min(c.tries, len(s.opts.RejoinDelays)-1)]
	c.tries++
	reg := c.reg
	lc.afterFunc(d, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if c.reg != reg || c.manual || c.state != stateErrored || s.conn != lc || lc.isClosing() {
			return
		}
		s.rejoinLocked(c, lc)
	})
}

// rejoinLocked sends phx_join with a new ref (hence a new join_ref) and
// handles the reply asynchronously.
func (s *Socket) rejoinLocked(c *Channel, lc *liveConn) {
	ref := s.nextRef()
	c.joinRef, c.state = ref, stateJoining
	reg := c.reg
	if !lc.expect(ref, func(r reply) { s.onRejoinReply(c, lc, reg, ref, r) }) {
		c.state = stateErrored
		return
	}
	err := lc.sendFrame(Frame{JoinRef: &ref, Ref: &ref, Topic: c.topic, Event: EventJoin, Payload: c.payload})
	if err != nil {
		lc.take(ref)
		c.state = stateErrored
		if !errors.Is(err, ErrNotConnected) {
			s.scheduleRejoinLocked(c, lc)
		}
		return
	}
	lc.afterFunc(s.opts.JoinTimeout, func() {
		if lc.take(ref) == nil {
			return // answered
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if c.reg != reg || c.joinRef != ref || lc.isClosing() {
			return
		}
		s.log.Warn().Str("topic", c.topic).Msg("phoenix: rejoin timed out")
		_ = lc.sendFrame(Frame{JoinRef: &ref, Ref: strPtr(s.nextRef()), Topic: c.topic, Event: EventLeave})
		c.state = stateErrored
		s.scheduleRejoinLocked(c, lc)
	})
}

// onRejoinReply runs on the reader goroutine without locks held.
func (s *Socket) onRejoinReply(c *Channel, lc *liveConn, reg uint64, ref string, r reply) {
	s.mu.Lock()
	if c.reg != reg || c.joinRef != ref {
		s.mu.Unlock()
		return
	}
	if r.status == "ok" {
		if !lc.isClosing() {
			c.state, c.tries = stateJoined, 0
			c.wakeLocked()
		}
		s.mu.Unlock()
		s.log.Debug().Str("topic", c.topic).Str("join_ref", ref).Msg("phoenix: rejoined")
		return
	}
	s.unregisterLocked(c)
	s.mu.Unlock()
	rerr := &ReplyError{Status: r.status, Response: r.response}
	s.log.Warn().Str("topic", c.topic).Err(rerr).Msg("phoenix: rejoin refused, channel dropped")
	if s.opts.OnJoinError != nil {
		s.opts.OnJoinError(c.topic, rerr)
	}
}

func strPtr(s string) *string { return &s }

// wrapErr prefixes *err once with the operation; used with defer on named
// results.
func wrapErr(err *error, format string, args ...any) {
	if *err != nil {
		*err = fmt.Errorf(format+": %w", append(args, *err)...)
	}
}
