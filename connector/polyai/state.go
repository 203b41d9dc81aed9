package polyai

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/bridgeworks/bridge/connector"
)

// record is what the state store keeps of one open session: enough for
// any bridge process to resume it from its cursor.
type record struct {
	ID        string    `json:"id"`
	Token     string    `json:"token"`  // the access token the session is bound to; never logged
	Cursor    int64     `json:"cursor"` // every event up to this sequence is stored
	Joined    bool      `json:"joined"` // the PolyAI agent joined (or a join was accepted)
	AutoJoin  bool      `json:"auto_join"`
	Streaming bool      `json:"streaming"`
	AsmFrom   int64     `json:"asm_from,omitempty"` // first chunk of a streamed reply not yet assembled
	Created   time.Time `json:"created"`
}

// keyPrefix starts every session key of the state store.
const keyPrefix = "session"

// stateKey is the state store key of a session: "session.<id>", or
// "session_x.<hex of id>" for an id with bytes a key may not hold.
func stateKey(id string) string {
	for i := 0; i < len(id); i++ {
		b := id[i]
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '-' || b == '_') {
			return keyPrefix + "_x." + hex.EncodeToString([]byte(id))
		}
	}
	return keyPrefix + "." + id
}

// loadRecords reads every session record of the state store.
func (c *Connector) loadRecords(ctx context.Context) (map[string]record, error) {
	keys, err := c.state.List(ctx, keyPrefix)
	if err != nil {
		return nil, fmt.Errorf("polyai: list sessions: %w", err)
	}
	out := make(map[string]record, len(keys))
	for _, k := range keys {
		raw, _, err := c.state.Get(ctx, k)
		if errors.Is(err, connector.ErrStateNotFound) {
			continue // ended meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("polyai: read session: %w", err)
		}
		var r record
		if err := json.Unmarshal(raw, &r); err != nil || r.ID == "" || stateKey(r.ID) != k {
			c.log.Warn().Str("key", k).Msg("polyai: unreadable session record skipped")
			continue
		}
		out[r.ID] = r
	}
	return out, nil
}

// save writes a session's record now.
func (c *Connector) save(ctx context.Context, s *session) error {
	if c.state == nil {
		return nil
	}
	s.mu.Lock()
	rec := s.rec
	s.dirty = false
	s.mu.Unlock()
	b, _ := json.Marshal(rec) // plain fields always encode
	if _, err := c.state.Put(ctx, stateKey(rec.ID), b); err != nil {
		s.mu.Lock()
		s.dirty = true
		s.mu.Unlock()
		return fmt.Errorf("polyai: save session %s: %w", rec.ID, err)
	}
	return nil
}

// forget removes an ended or replaced session's record.
func (c *Connector) forget(ctx context.Context, id string) {
	if c.state == nil {
		return
	}
	if err := c.state.Delete(ctx, stateKey(id), 0); err != nil && !errors.Is(err, connector.ErrStateNotFound) {
		c.log.Warn().Err(err).Str("session_id", id).Msg("polyai: session record not removed")
	}
}

// flush writes the records of sessions whose cursor or flags changed
// (every session when all).
func (c *Connector) flush(ctx context.Context, all bool) {
	c.mu.Lock()
	list := make([]*session, 0, len(c.sessions))
	for _, s := range c.sessions {
		list = append(list, s)
	}
	c.mu.Unlock()
	for _, s := range list {
		s.mu.Lock()
		dirty, gone := s.dirty || all, s.isGone()
		s.mu.Unlock()
		if !dirty || gone {
			continue
		}
		if err := c.save(ctx, s); err != nil {
			c.log.Warn().Err(err).Msg("polyai: cursor not saved; retried at the next flush")
			if ctx.Err() != nil {
				return
			}
		}
	}
}

// flushLoop writes changed records every Settings.StateFlush.
func (c *Connector) flushLoop(rs *runState) {
	t := time.NewTicker(c.st.StateFlush)
	defer t.Stop()
	for {
		select {
		case <-rs.ctx.Done():
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(rs.ctx, 10*time.Second)
			c.flush(ctx, false)
			cancel()
		}
	}
}

// idOK says whether a session id can be used in the socket URL and the
// state store (any non-empty id without control bytes).
func idOK(id string) bool {
	return id != "" && len(id) <= 256 && !strings.ContainsFunc(id, func(r rune) bool { return r < 0x20 || r == 0x7f })
}
