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
	// Seen is the session's last sign of life known to the store: when
	// its socket last opened, or its last frame read before the socket
	// went down. Open says the socket was open when the record was
	// written; it then stayed open until it went down or until the
	// connection's alive stamp (see aliveKey), whichever came first.
	Seen time.Time `json:"seen,omitzero"`
	Open bool      `json:"open,omitempty"`
}

// aliveKey is the state store key of the connection's alive stamp: the
// time until which the process holding the sessions was running, written
// every aliveEvery (after the records, so an open record it covers was
// written by that process). After a restart a session whose record says
// Open was alive until the stamp: one write per interval keeps the last
// sign of life of every session with an open socket, instead of one
// write per session.
const aliveKey = "alive"

// aliveEvery is how often the alive stamp is written. Coarse next to
// PolyAI's idle lifetime (10m); a stale stamp only makes a session look
// older than it is.
const aliveEvery = 30 * time.Second

// aliveStamp is the value under aliveKey.
type aliveStamp struct {
	At time.Time `json:"at"`
}

// lastSign is the last sign of life of a stored session: its creation,
// the record's Seen, and the alive stamp if its socket was open then.
func (r record) lastSign(alive time.Time) time.Time {
	last := r.Created
	if r.Seen.After(last) {
		last = r.Seen
	}
	if r.Open && alive.After(last) {
		last = alive
	}
	return last
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

// loadRecords reads every session record of the state store. Each
// record's Seen becomes its last sign of life (see record.lastSign) and
// Open false: this process has opened none of the sockets yet.
func (c *Connector) loadRecords(ctx context.Context) (map[string]record, error) {
	keys, err := c.state.List(ctx, keyPrefix)
	if err != nil {
		return nil, fmt.Errorf("polyai: list sessions: %w", err)
	}
	var alive aliveStamp
	switch raw, _, err := c.state.Get(ctx, aliveKey); {
	case errors.Is(err, connector.ErrStateNotFound):
	case err != nil:
		return nil, fmt.Errorf("polyai: read alive stamp: %w", err)
	default:
		_ = json.Unmarshal(raw, &alive) // unreadable: no stamp, sessions look older
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
		r.Seen, r.Open = r.lastSign(alive.At), false
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

// stampAlive writes the alive stamp.
func (c *Connector) stampAlive(ctx context.Context, at time.Time) error {
	b, _ := json.Marshal(aliveStamp{At: at.UTC()}) // a time always encodes
	if _, err := c.state.Put(ctx, aliveKey, b); err != nil {
		return fmt.Errorf("polyai: write alive stamp: %w", err)
	}
	return nil
}

// flush writes the records of sessions whose cursor or flags changed
// (every session when all); it reports whether every write succeeded.
func (c *Connector) flush(ctx context.Context, all bool) bool {
	c.mu.Lock()
	list := make([]*session, 0, len(c.sessions))
	for _, s := range c.sessions {
		list = append(list, s)
	}
	c.mu.Unlock()
	ok := true
	for _, s := range list {
		s.mu.Lock()
		dirty, gone := s.dirty || all, s.isGone()
		s.mu.Unlock()
		if !dirty || gone {
			continue
		}
		if err := c.save(ctx, s); err != nil {
			ok = false
			c.log.Warn().Err(err).Msg("polyai: cursor not saved; retried at the next flush")
			if ctx.Err() != nil {
				return false
			}
		}
	}
	return ok
}

// flushLoop writes changed records every Settings.StateFlush and, after
// a flush that wrote them all, the alive stamp every aliveEvery.
func (c *Connector) flushLoop(rs *runState) {
	t := time.NewTicker(c.st.StateFlush)
	defer t.Stop()
	var stamped time.Time
	for {
		select {
		case <-rs.ctx.Done():
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(rs.ctx, 10*time.Second)
			now := time.Now()
			if c.flush(ctx, false) && now.Sub(stamped) >= aliveEvery {
				if err := c.stampAlive(ctx, now); err != nil {
					c.log.Warn().Err(err).Msg("polyai: alive stamp not written; retried at the next flush")
				} else {
					stamped = now
				}
			}
			cancel()
		}
	}
}

// idOK says whether a session id can be used in the socket URL and the
// state store (any non-empty id without control bytes).
func idOK(id string) bool {
	return id != "" && len(id) <= 256 && !strings.ContainsFunc(id, func(r rune) bool { return r < 0x20 || r == 0x7f })
}
