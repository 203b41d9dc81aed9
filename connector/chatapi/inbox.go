package chatapi

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/retry"
	"github.com/bridgeworks/bridge/subjects"
)

// EventInbox is the event of one inbox item.
const EventInbox = "inbox_message"

// keepRead bounds the ids of read items remembered per agent (in memory
// and in the state store): they keep an item that a poll returned while
// its mark-read was under way from being published again.
const keepRead = 1000

// maxMarkBatch bounds the ids of one mark-read call.
const maxMarkBatch = 100

type itemState int

const (
	itemQueued itemState = iota + 1 // handed to Receive, not settled yet
	itemStored                      // stored in JetStream; mark-read pending
	itemRead                        // marked read (or mark_read = "none")
)

// inbox is the bridge's record of one agent's inbox, kept across
// sessions; its cursor (stored and read ids) also lives in the state
// store, so a restarted bridge neither publishes an item again nor
// forgets to mark it read.
type inbox struct {
	agent string

	mu     sync.Mutex
	items  map[string]itemState
	read   []string // read ids, oldest first, at most keepRead
	loaded bool
}

func newInbox(agent string) *inbox { return &inbox{agent: agent, items: map[string]itemState{}} }

// cursor is the state store record of an inbox.
type cursor struct {
	Stored []string `json:"stored"` // on NATS, not yet marked read
	Read   []string `json:"read"`   // recently marked read
}

// stateKey is the state store key of agent's cursor.
func stateKey(agent string) string {
	ok := len(agent) <= 64
	for i := 0; ok && i < len(agent); i++ {
		c := agent[i]
		ok = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
	}
	if ok {
		return "inbox." + agent
	}
	h := sha256.Sum256([]byte(agent))
	return "inbox.h" + hex.EncodeToString(h[:12])
}

// load reads the cursor once per connector.
func (ib *inbox) load(ctx context.Context, st connector.StateStore) error {
	ib.mu.Lock()
	done := ib.loaded
	ib.mu.Unlock()
	if done || st == nil {
		return nil
	}
	b, _, err := st.Get(ctx, stateKey(ib.agent))
	if errors.Is(err, connector.ErrStateNotFound) {
		b, err = nil, nil
	}
	if err != nil {
		return fmt.Errorf("read inbox cursor of %s: %w", ib.agent, err)
	}
	var cur cursor
	if b != nil {
		if err := json.Unmarshal(b, &cur); err != nil {
			return fmt.Errorf("inbox cursor of %s is not JSON: %w", ib.agent, err)
		}
	}
	ib.mu.Lock()
	defer ib.mu.Unlock()
	for _, id := range cur.Read {
		if _, ok := ib.items[id]; !ok {
			ib.items[id] = itemRead
			ib.read = append(ib.read, id)
		}
	}
	for _, id := range cur.Stored {
		if ib.items[id] != itemRead {
			ib.items[id] = itemStored
		}
	}
	ib.loaded = true
	return nil
}

// claim marks id queued and reports whether it is new (to be published).
func (ib *inbox) claim(id string) bool {
	ib.mu.Lock()
	defer ib.mu.Unlock()
	if _, ok := ib.items[id]; ok {
		return false
	}
	ib.items[id] = itemQueued
	return true
}

// settle records the outcome of a queued item: stored, or forgotten (to
// be published again by a later poll).
func (ib *inbox) settle(id string, stored bool) {
	ib.mu.Lock()
	defer ib.mu.Unlock()
	if ib.items[id] != itemQueued {
		return
	}
	if stored {
		ib.items[id] = itemStored
	} else {
		delete(ib.items, id)
	}
}

// pending returns the stored ids awaiting mark-read.
func (ib *inbox) pending() []string {
	ib.mu.Lock()
	defer ib.mu.Unlock()
	var out []string
	for id, s := range ib.items {
		if s == itemStored {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// markedRead moves ids to read, dropping the oldest read ids past keepRead.
func (ib *inbox) markedRead(ids []string) {
	ib.mu.Lock()
	defer ib.mu.Unlock()
	for _, id := range ids {
		if ib.items[id] == itemStored {
			ib.items[id] = itemRead
			ib.read = append(ib.read, id)
		}
	}
	if n := len(ib.read) - keepRead; n > 0 {
		for _, id := range ib.read[:n] {
			delete(ib.items, id)
		}
		ib.read = slices.Delete(ib.read, 0, n)
	}
}

func (ib *inbox) snapshot() cursor {
	ib.mu.Lock()
	cur := cursor{Read: slices.Clone(ib.read)}
	ib.mu.Unlock()
	cur.Stored = ib.pending()
	return cur
}

// save writes the cursor to the state store.
func (ib *inbox) save(ctx context.Context, st connector.StateStore) error {
	if st == nil {
		return nil
	}
	b, _ := json.Marshal(ib.snapshot()) // strings only
	if _, err := st.Put(ctx, stateKey(ib.agent), b); err != nil {
		return fmt.Errorf("save inbox cursor of %s: %w", ib.agent, err)
	}
	return nil
}

type item struct {
	ev  connector.Event
	ack connector.AckFunc
}

// session is one Connect..Close: a poller per agent and one marker.
type session struct {
	c      *Connector
	out    chan item
	halt   chan struct{} // closed by stop
	mark   chan struct{} // coalescing: stored items to mark read
	cancel context.CancelFunc
	ctx    context.Context
	wg     sync.WaitGroup
	once   sync.Once
}

func newSession(c *Connector) *session {
	ctx, cancel := context.WithCancel(context.Background())
	return &session{c: c, out: make(chan item, queueSize), halt: make(chan struct{}), mark: make(chan struct{}, 1), ctx: ctx, cancel: cancel}
}

func (s *session) start() {
	for _, a := range s.c.st.InboxAgents {
		ib := s.c.inboxes[a]
		s.wg.Go(func() { s.poll(ib) })
	}
	if len(s.c.st.InboxAgents) > 0 {
		s.wg.Go(s.marker)
		s.kick() // items stored by an earlier run
	}
}

func (s *session) kick() {
	select {
	case s.mark <- struct{}{}:
	default:
	}
}

// stop ends the pollers and the marker, marks read what is stored (within
// ctx), and forgets the queued items nobody received.
func (s *session) stop(ctx context.Context) error {
	s.once.Do(func() { close(s.halt) })
	s.cancel()
	done := make(chan struct{})
	go func() { // owned: ends when wg does
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("chatapi: close: %w", ctx.Err())
	}
	for {
		select {
		case it := <-s.out:
			it.ack(ctx, connector.ErrNotConnected)
			continue
		default:
		}
		break
	}
	var errs []error
	for _, a := range s.c.st.InboxAgents {
		if err := s.flush(ctx, s.c.inboxes[a]); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		s.c.log.Warn().Err(err).Msg("stored inbox items not marked read at close; the next session marks them")
	}
	return nil
}

// emit hands an event to Receive, waiting while the queue is full.
func (s *session) emit(it item) bool {
	select {
	case s.out <- it:
		return true
	case <-s.halt:
		return false
	}
}

func (s *session) lifecycle(l subjects.Lifecycle, agent string, data map[string]any) {
	b, _ := json.Marshal(data)
	s.emit(item{ev: connector.Event{Lifecycle: l, Room: agent, Data: b}, ack: func(context.Context, error) {}})
}

// poll polls one agent's inbox until the session ends: at once, then
// every poll_interval; a failing poll backs off (the connection's
// reconnect policy; a Retry-After holds the key's calls too).
func (s *session) poll(ib *inbox) {
	bo := s.c.recon.Start()
	first, failing := true, false
	for {
		n, err := s.pollOnce(ib, first)
		wait := s.c.st.PollInterval
		switch {
		case s.ctx.Err() != nil:
			return
		case err != nil:
			wait = bo.Next()
			if !failing {
				s.c.log.Warn().Err(err).Str("agent", ib.agent).Int64("retry_in_ms", wait.Milliseconds()).Msg("inbox poll failed; backing off")
				s.lifecycle(subjects.LifecycleDisconnected, ib.agent, map[string]any{"reason": "inbox poll failed: " + err.Error(), "agent_id": ib.agent})
			}
			failing = true
		default:
			if failing {
				s.c.reconnects.Add(1)
				s.c.log.Info().Str("agent", ib.agent).Msg("inbox poll works again")
				s.lifecycle(subjects.LifecycleConnected, ib.agent, map[string]any{"reconnect": true, "agent_id": ib.agent})
			}
			failing, first = false, false
			bo.Reset()
			if n > 0 {
				s.kick()
			}
		}
		if !retry.Sleep(s.ctx, wait) {
			return
		}
	}
}

// pollOnce fetches the unread items and hands the new ones to Receive;
// it returns how many it had seen before (stored ones are marked read
// again).
func (s *session) pollOnce(ib *inbox, first bool) (int, error) {
	b, _, err := s.c.rest.getJSON(s.ctx, agentPath(ib.agent, "/inbox"))
	if err != nil {
		return 0, err
	}
	items, err := inboxItems(b, s.c.st.InboxListKey)
	if err != nil {
		return 0, err
	}
	again := 0
	for _, raw := range items {
		id, t := itemID(raw, s.c.st.InboxIDField, ib.agent)
		if !ib.claim(id) {
			again++ // queued, stored or read already: the marker sees to the stored ones
			continue
		}
		ev := connector.Event{Room: ib.agent, Name: EventInbox, Key: id, Time: t, Data: raw, GapFill: first}
		ack := func(_ context.Context, err error) {
			ib.settle(id, err == nil)
			if err == nil {
				s.kick()
			}
		}
		if !s.emit(item{ev: ev, ack: ack}) {
			ib.settle(id, false)
			return again, nil
		}
	}
	return again, nil
}

// inboxItems reads the list of an inbox answer.
func inboxItems(b []byte, listKey string) ([]json.RawMessage, error) {
	var body map[string]json.RawMessage
	if err := json.Unmarshal(b, &body); err != nil {
		return nil, fmt.Errorf("inbox answer is not a JSON object: %w", err)
	}
	raw, ok := body[listKey]
	if !ok {
		return nil, fmt.Errorf("inbox answer has no %q list (settings.inbox_list_key)", listKey)
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, fmt.Errorf("inbox answer's %q is not a list", listKey)
	}
	return items, nil
}

// itemID is an item's id (settings.inbox_id_field) or, without one, a
// hash of the item as sent; t is its created_at when it has one.
func itemID(raw json.RawMessage, field, agent string) (string, time.Time) {
	var m map[string]json.RawMessage
	_ = json.Unmarshal(raw, &m)
	var id string
	if v, ok := m[field]; ok {
		if json.Unmarshal(v, &id) != nil {
			id = string(v) // a number
		}
	}
	var at string
	_ = json.Unmarshal(m["created_at"], &at)
	t, _ := time.Parse(time.RFC3339Nano, at)
	if id == "" {
		h := sha256.New()
		h.Write([]byte(agent))
		h.Write([]byte{0})
		h.Write(raw)
		id = "h" + hex.EncodeToString(h.Sum(nil)[:16])
	}
	return id, t
}

// marker marks stored items read, in batches, until the session ends.
func (s *session) marker() {
	bo := s.c.recon.Start()
	for {
		select {
		case <-s.mark:
		case <-s.ctx.Done():
			return
		}
		var errs []error
		for _, a := range s.c.st.InboxAgents {
			if err := s.flush(s.ctx, s.c.inboxes[a]); err != nil {
				errs = append(errs, err)
			}
		}
		if err := errors.Join(errs...); err != nil {
			wait := bo.Next()
			if s.ctx.Err() == nil {
				s.c.log.Warn().Err(err).Int64("retry_in_ms", wait.Milliseconds()).Msg("mark-read failed; retrying")
			}
			if !retry.Sleep(s.ctx, wait) {
				return
			}
			s.kick()
			continue
		}
		bo.Reset()
	}
}

// flush saves the cursor, marks the stored items read and saves it again.
func (s *session) flush(ctx context.Context, ib *inbox) error {
	ids := ib.pending()
	if len(ids) == 0 {
		return nil
	}
	if err := ib.save(ctx, s.c.state); err != nil {
		return err
	}
	for len(ids) > 0 {
		n := min(len(ids), maxMarkBatch)
		batch := ids[:n]
		if err := s.markRead(ctx, ib.agent, batch); err != nil {
			return err
		}
		ib.markedRead(batch)
		ids = ids[n:]
	}
	return ib.save(ctx, s.c.state)
}

// markRead calls mark-read for ids in the configured body shape.
func (s *session) markRead(ctx context.Context, agent string, ids []string) error {
	switch s.c.st.MarkRead {
	case MarkReadNone:
		return nil
	case MarkReadID:
		for _, id := range ids {
			if _, _, err := s.c.rest.readAll(ctx, call{method: http.MethodPost, path: agentPath(agent, "/mark-read"), body: map[string]string{"message_id": id}}); err != nil {
				return fmt.Errorf("mark-read %s: %w", agent, err)
			}
		}
		return nil
	}
	if _, _, err := s.c.rest.readAll(ctx, call{method: http.MethodPost, path: agentPath(agent, "/mark-read"), body: map[string][]string{"message_ids": ids}}); err != nil {
		return fmt.Errorf("mark-read %s: %w", agent, err)
	}
	return nil
}
