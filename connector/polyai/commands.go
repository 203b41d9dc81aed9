package polyai

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/retry"
	"github.com/bridgeworks/bridge/subjects"
)

// maxText bounds a user message's text (PolyAI's documented frame limit
// is 128 KiB; the envelope needs some of it).
const maxText = 120 << 10

// Commands lists every command and read the PolyAI connector executes.
func Commands() []string {
	return []string{"create_session", "end_session", "join", "mark_failed", "mark_processed",
		"mark_processing", "send_message", "sessions", "typing"}
}

// Execute runs one command. Commands on a session (room = session id)
// go over its socket and, but for typing, are answered by their echo.
func (c *Connector) Execute(ctx context.Context, cmd connector.Command) (connector.Response, error) {
	args := cmd.Args
	if len(args) == 0 {
		args = json.RawMessage("{}")
	}
	switch cmd.Name {
	case "create_session":
		return c.createSession(ctx, args)
	case "sessions":
		return c.listSessions()
	case "mark_processing", "mark_processed", "mark_failed":
		// PolyAI keeps no processing state: answered by the bridge.
		return connector.Response{Status: http.StatusOK, Data: json.RawMessage(`{}`)}, nil
	case "send_message", "typing", "end_session", "join":
	default:
		return connector.Response{}, connector.BadRequest("command", "unknown command %q for polyai (known: %s)", cmd.Name, strings.Join(Commands(), ", "))
	}
	if cmd.Room == "" {
		return connector.Response{}, connector.BadRequest("room", "%s needs a room (the session id)", cmd.Name)
	}
	s, rs, err := c.session(cmd.Room)
	if err != nil {
		if cmd.Name == "end_session" && isEnded(err) {
			return endedResponse(), nil
		}
		return connector.Response{}, err
	}
	if rs == nil {
		return connector.Response{}, connector.ErrNotConnected
	}
	switch cmd.Name {
	case "send_message":
		var a struct {
			Text   *string           `json:"text"`
			Custom map[string]string `json:"metadata"`
		}
		if err := decode(args, &a); err != nil {
			return connector.Response{}, err
		}
		switch {
		case a.Text == nil:
			return connector.Response{}, connector.BadRequest("text", "is required")
		case blank(*a.Text):
			return connector.Response{}, connector.BadRequest("text", "is blank")
		case len(*a.Text) > maxText:
			return connector.Response{}, connector.BadRequest("text", "is %d bytes; at most %d fit in one PolyAI event", len(*a.Text), maxText)
		}
		payload, _ := json.Marshal(map[string]string{"text": *a.Text})
		return s.request(ctx, rs, cmd.ID, typeUserMessage, payload, a.Custom)
	case "typing":
		var a struct {
			Typing *bool `json:"typing"`
		}
		if err := decode(args, &a); err != nil {
			return connector.Response{}, err
		}
		if a.Typing == nil {
			return connector.Response{}, connector.BadRequest("typing", "is required (true or false)")
		}
		state := "TYPING_STATE_STOPPED"
		if *a.Typing {
			state = "TYPING_STATE_STARTED"
		}
		payload, _ := json.Marshal(map[string]string{"state": state})
		if err := s.sendOnce(ctx, rs, clientFrame(typeUserTyping, payload, nil)); err != nil {
			return connector.Response{}, err
		}
		return connector.Response{Status: http.StatusOK, Data: json.RawMessage(`{}`)}, nil
	case "end_session":
		resp, err := s.request(ctx, rs, cmd.ID, typeUserEndSession, json.RawMessage("{}"), nil)
		if isEnded(err) {
			// The session ended (its SESSION_END came before our echo, or
			// earlier): what the command asked for is done.
			return endedResponse(), nil
		}
		return resp, err
	default: // join
		return s.request(ctx, rs, cmd.ID, typeRequestJoin, json.RawMessage("{}"), nil)
	}
}

// isEnded reports whether err says the platform ended the session.
func isEnded(err error) bool {
	var pe *connector.PlatformError
	return errors.As(err, &pe) && pe.Code == "session_ended"
}

// endedResponse answers end_session for a session already ended.
func endedResponse() connector.Response {
	return connector.Response{Status: http.StatusOK, Data: json.RawMessage(`{"ended":true}`)}
}

// createSession mints a token, creates a session and starts holding it.
func (c *Connector) createSession(ctx context.Context, args json.RawMessage) (connector.Response, error) {
	var a struct {
		Streaming *bool `json:"streaming"`
		Join      *bool `json:"join"`
	}
	if err := decode(args, &a); err != nil {
		return connector.Response{}, err
	}
	streaming := c.st.Streaming
	if a.Streaming != nil {
		streaming = *a.Streaming
	}
	// Not before Connect has read the stored sessions (it would drop one
	// created meanwhile as ended elsewhere): retried once connected.
	c.mu.Lock()
	connected := c.run != nil
	c.mu.Unlock()
	if !connected {
		return connector.Response{}, connector.ErrNotConnected
	}
	rec, err := c.newSession(ctx, streaming)
	if err != nil {
		// A session created but not answered is an orphan PolyAI ends by
		// itself after its idle timeout; nothing else was spent.
		return connector.Response{}, err
	}
	if a.Join != nil {
		rec.AutoJoin = *a.Join
	}
	s := newSession(c, rec)
	s.resetRun()
	if err := c.save(ctx, s); err != nil {
		return connector.Response{}, err
	}
	c.mu.Lock()
	c.sessions[s.id] = s
	rs := c.run
	c.mu.Unlock()
	if rs != nil {
		rs.spawn(func() { s.loop(rs) })
	}
	data, _ := json.Marshal(map[string]any{"session_id": s.id, "streaming": streaming, "join": rec.AutoJoin})
	return connector.Response{Status: http.StatusOK, Data: data, Ref: s.id}, nil
}

// listSessions answers the sessions read: every session held.
func (c *Connector) listSessions() (connector.Response, error) {
	type view struct {
		ID        string `json:"session_id"`
		Cursor    int64  `json:"cursor"`
		Joined    bool   `json:"joined"`
		Streaming bool   `json:"streaming"`
		Connected bool   `json:"connected"`
	}
	c.mu.Lock()
	list := make([]*session, 0, len(c.sessions))
	for _, s := range c.sessions {
		list = append(list, s)
	}
	c.mu.Unlock()
	out := make([]view, 0, len(list))
	for _, s := range list {
		s.mu.Lock()
		out = append(out, view{ID: s.id, Cursor: s.rec.Cursor, Joined: s.rec.Joined, Streaming: s.rec.Streaming, Connected: s.isReady})
		s.mu.Unlock()
	}
	slices.SortFunc(out, func(a, b view) int { return strings.Compare(a.ID, b.ID) })
	data, _ := json.Marshal(map[string]any{"sessions": out})
	return connector.Response{Status: http.StatusOK, Data: data}, nil
}

// waitReady waits until the session's socket is open.
func (s *session) waitReady(ctx context.Context, rs *runState) error {
	select {
	case <-s.readyCh():
		return nil
	case <-s.gone:
		return s.goneError()
	case <-rs.halt:
		return connector.ErrNotConnected
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *session) goneError() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.goneErr
}

// sendOnce writes a client event that gets no echo.
func (s *session) sendOnce(ctx context.Context, rs *runState, frame []byte) error {
	if err := s.waitReady(ctx, rs); err != nil {
		return err
	}
	return s.write(ctx, frame)
}

// request sends a client event with client_event_id cid and waits for
// its echo, sending it again (same cid) each time the echo is late, up
// to Settings.MaxResends times; after that the outcome is unknown.
func (s *session) request(ctx context.Context, rs *runState, cid, typ string, payload json.RawMessage, custom map[string]string) (connector.Response, error) {
	if cid == "" {
		cid = rand.Text()
	}
	ch := make(chan reply, 1)
	s.mu.Lock()
	for _, e := range s.echoes {
		if e.cid == cid { // executed before: its echo came already
			s.mu.Unlock()
			return s.response(cid, e.r, 0)
		}
	}
	if s.waiters == nil {
		s.waiters = map[string]chan reply{}
	}
	if _, busy := s.waiters[cid]; busy {
		s.mu.Unlock()
		return connector.Response{}, fmt.Errorf("polyai: client event %s is already waiting for its echo", cid)
	}
	s.waiters[cid] = ch
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.waiters, cid)
		s.mu.Unlock()
	}()
	meta := map[string]string{}
	for k, v := range custom {
		meta[k] = v
	}
	meta["client_event_id"] = cid
	frame := clientFrame(typ, payload, meta)
	for sends := 0; ; {
		select { // wait for an open socket, or an echo the replay brings
		case r := <-ch:
			return s.response(cid, r, sends)
		default:
		}
		select {
		case r := <-ch:
			return s.response(cid, r, sends)
		case <-s.readyCh():
		case <-s.gone:
			return connector.Response{}, s.goneError()
		case <-rs.halt:
			return connector.Response{}, connector.ErrNotConnected
		case <-ctx.Done():
			return connector.Response{}, ctx.Err()
		}
		if err := s.write(ctx, frame); err != nil {
			if errors.Is(err, errNotOpen) {
				continue
			}
			if sends == 0 {
				continue // the socket broke before anything went out: wait for the next one
			}
		}
		sends++
		if r, done, err := s.awaitEcho(ctx, rs, ch, s.c.st.EchoTimeout*time.Duration(sends)); done {
			if err != nil {
				return connector.Response{}, err
			}
			return s.response(cid, r, sends)
		}
		if sends > s.c.st.MaxResends {
			return connector.Response{}, connector.Sent(fmt.Errorf("polyai: no echo of %s %s after %d sends", eventName(typ), cid, sends))
		}
		s.c.log.Info().Str("session_id", s.id).Str("client_event_id", cid).Int("sends", sends).Msg("polyai: no echo in time; sending again")
	}
}

// awaitEcho waits up to d for the answer on ch; done is false when
// none came. The wait is extended while the session's reader is held
// back by back-pressure: the echo may be queued unread.
func (s *session) awaitEcho(ctx context.Context, rs *runState, ch <-chan reply, d time.Duration) (reply, bool, error) {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case r := <-ch:
			return r, true, nil
		case <-t.C:
			s.mu.Lock()
			held := s.heldBackLocked()
			s.mu.Unlock()
			if !held {
				return reply{}, false, nil
			}
			t.Reset(d)
		case <-s.gone:
			return reply{}, true, s.goneError()
		case <-rs.halt:
			return reply{}, true, connector.ErrNotConnected
		case <-ctx.Done():
			return reply{}, true, ctx.Err()
		}
	}
}

// response turns an echo (or an error answer) into the command's result.
func (s *session) response(cid string, r reply, sends int) (connector.Response, error) {
	if r.err != nil {
		return connector.Response{}, r.err
	}
	var p struct {
		MessageID string `json:"message_id"`
	}
	_ = json.Unmarshal(r.payload, &p)
	data, _ := json.Marshal(map[string]any{"session_id": s.id, "client_event_id": cid,
		"message_id": p.MessageID, "sequence": r.seq, "sends": sends})
	return connector.Response{Status: http.StatusOK, Data: data, Ref: p.MessageID}, nil
}

// replace gets a new token and session for one the platform no longer
// accepts (its token expired, it is unknown), announces the swap as the
// lifecycle event session_replaced and starts holding the new one.
func (c *Connector) replace(rs *runState, old *session, reason string) {
	old.mu.Lock()
	streaming, auto := old.rec.Streaming, old.rec.AutoJoin
	old.mu.Unlock()
	c.log.Info().Str("session_id", old.id).Str("reason", reason).Msg("polyai: session refused; replacing it")
	bo := c.policy.Start()
	var rec record
	for {
		ctx, cancel := context.WithTimeout(rs.ctx, dialTimeout)
		r, err := c.newSession(ctx, streaming)
		cancel()
		if err == nil {
			rec = r
			break
		}
		if rs.ctx.Err() != nil {
			return // the next Connect tries again
		}
		wait, _ := connector.CapWait(connector.RetryAfter(err), c.cfg.RetryAfterMax)
		wait = max(wait, bo.Next())
		c.log.Warn().Err(err).Str("session_id", old.id).Int64("retry_in_ms", wait.Milliseconds()).Msg("polyai: replacement session not created")
		if !retry.Sleep(rs.ctx, wait) {
			return
		}
	}
	rec.AutoJoin = auto
	ns := newSession(c, rec)
	ns.resetRun()
	ctx, cancel := context.WithTimeout(rs.ctx, 10*time.Second)
	if err := c.save(ctx, ns); err != nil {
		c.log.Warn().Err(err).Str("session_id", ns.id).Msg("polyai: replacement not saved yet; retried at the next flush")
	}
	c.forget(ctx, old.id)
	cancel()
	c.mu.Lock()
	if c.sessions[old.id] == old {
		delete(c.sessions, old.id)
	}
	c.sessions[ns.id] = ns
	if len(c.replaced) >= 10000 {
		clear(c.replaced)
	}
	c.replaced[old.id] = ns.id
	c.mu.Unlock()
	old.markGone(errSessionGone(old.id, ns.id))
	rs.lifecycle(connector.Event{Lifecycle: subjects.LifecycleSessionReplaced, Room: old.id, Key: "replaced-" + old.id},
		map[string]any{"old_session_id": old.id, "new_session_id": ns.id, "reason": reason})
	rs.spawn(func() { ns.loop(rs) })
}

// decode parses args into v; a type error names the field.
func decode(args json.RawMessage, v any) error {
	if err := json.Unmarshal(args, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			field := te.Field
			if field == "" {
				field = "args"
			}
			return connector.BadRequest(field, "must not be %s", te.Value)
		}
		return connector.BadRequest("args", "not a JSON object: %v", err)
	}
	return nil
}

func blank(s string) bool {
	return strings.IndexFunc(s, func(r rune) bool { return !unicode.IsSpace(r) && unicode.IsPrint(r) }) < 0
}
