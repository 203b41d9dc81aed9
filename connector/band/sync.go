package band

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/internal/tick"
	"github.com/bridgeworks/bridge/retry"
	"github.com/bridgeworks/bridge/subjects"
)

// syncer runs the session's room syncs (a full resync after every open,
// after a failed catch-up or an overflow; the idle safety net every
// IdleResync/4) without a goroutine while there is nothing to do. The idle
// tick is an entry of the connector's wheel, one runtime timer for every
// connection of a Factory (without one, a runtime timer re-armed by its
// callback); a failed resync is
// retried by another; both, like requestResync, only mark work and start
// the worker, one at a time, which returns once no work is left. Guarded
// by mu.
type syncer struct {
	mu      sync.Mutex
	work    func()         // runs the worker with the session's context; nil until startSync
	working bool           // the worker runs
	resync  bool           // a full resync is pending
	idle    bool           // an idle check is due
	stopped bool           // the session stops: no worker starts any more
	tick    *time.Timer    // the idle tick; nil on the connector's wheel
	wheel   tick.Entry     // the idle tick on the connector's wheel (Connector.idle)
	retry   *time.Timer    // the pending retry of a failed resync
	bo      *retry.Backoff // used by the worker only; made by a failed resync, dropped by the next success
}

// idlePeriod is how often the idle safety net looks for quiet rooms.
func idlePeriod(o Options) time.Duration { return max(o.IdleResync/4, 10*time.Millisecond) }

// startSync starts syncing once the agent's channels are joined; a resync
// asked for before (by the first open) runs now.
func (s *session) startSync(ctx context.Context) {
	y := &s.syncs
	period := idlePeriod(*s.c.opts)
	y.mu.Lock()
	defer y.mu.Unlock()
	if y.stopped {
		return
	}
	y.work = func() { s.syncWork(ctx) }
	if w := s.c.idle; w != nil {
		w.Add(&y.wheel, s)
	} else {
		y.tick = time.AfterFunc(period, func() { s.syncTick(period) })
	}
	s.startSyncLocked()
}

// stopSync stops the timers; no worker starts after it, so the session's
// WaitGroup can be waited on.
func (s *session) stopSync() {
	y := &s.syncs
	y.mu.Lock()
	defer y.mu.Unlock()
	y.stopped = true
	if y.tick != nil {
		y.tick.Stop()
	}
	y.wheel.Stop()
	if y.retry != nil {
		y.retry.Stop()
	}
}

// requestResync asks for a full resync (coalescing: one pending at most).
func (s *session) requestResync() {
	y := &s.syncs
	y.mu.Lock()
	defer y.mu.Unlock()
	y.resync = true
	s.startSyncLocked()
}

// syncTick is the idle timer's callback: an idle check is due.
func (s *session) syncTick(period time.Duration) {
	y := &s.syncs
	y.mu.Lock()
	defer y.mu.Unlock()
	if y.stopped {
		return
	}
	y.idle = true
	if y.tick != nil {
		y.tick.Reset(period)
	}
	s.startSyncLocked()
}

// Tick is the idle tick on the connector's wheel (tick.Ticker).
func (s *session) Tick() { s.syncTick(0) }

// startSyncLocked starts the worker if there is work and none runs.
func (s *session) startSyncLocked() {
	y := &s.syncs
	if y.working || y.work == nil || y.stopped || !(y.resync || y.idle) {
		return
	}
	y.working = true
	s.wg.Go(y.work) // owned: the session's WaitGroup; stop waits for it
}

// syncWork runs the pending resync (first) and idle check until none is
// left, then returns.
func (s *session) syncWork(ctx context.Context) {
	y := &s.syncs
	for {
		y.mu.Lock()
		if ctx.Err() != nil || (!y.resync && !y.idle) {
			y.working = false
			y.mu.Unlock()
			return
		}
		if !y.resync {
			y.idle = false
			y.mu.Unlock()
			s.idleCheck(ctx)
			continue
		}
		y.resync = false
		if y.retry != nil {
			y.retry.Stop() // this resync is the retry
			y.retry = nil
		}
		y.mu.Unlock()
		err := s.reconcile(ctx)
		if err == nil || ctx.Err() != nil {
			y.bo = nil
			continue
		}
		if y.bo == nil {
			y.bo = retry.Policy{Initial: time.Second, Max: time.Minute}.Start()
		}
		wait := y.bo.Next()
		s.log.Warn().Err(err).Int64("retry_in_ms", wait.Milliseconds()).Msg("room sync failed; retrying")
		y.mu.Lock()
		if !y.stopped {
			y.retry = time.AfterFunc(wait, s.requestResync)
		}
		y.mu.Unlock()
	}
}

// catchUpList reads one page of a catch-up list, holding a place of the
// process-wide catch-up gate for the call only (never while the page's
// events wait for the queue, so one stalled connection cannot hold it).
func (s *session) catchUpList(ctx context.Context, path string) ([]json.RawMessage, listMeta, error) {
	if err := s.c.catch.Enter(ctx); err != nil {
		return nil, listMeta{}, err
	}
	defer s.c.catch.Leave()
	return s.c.rest.list(ctx, path)
}

type chatRoom struct {
	ID string `json:"id"`
}

// listChats reads every page of GET /agent/chats, keyed by id because
// offset pages can shift while being read.
func (s *session) listChats(ctx context.Context) (map[string]bool, error) {
	ids := map[string]bool{}
	for page := 1; page <= 1000; page++ {
		items, meta, err := s.catchUpList(ctx, "/api/v1/agent/chats?page="+itoa(page)+"&page_size=100")
		if err != nil {
			return nil, err
		}
		for _, raw := range items {
			var c chatRoom
			if json.Unmarshal(raw, &c) == nil && c.ID != "" {
				ids[c.ID] = true
			}
		}
		if page >= meta.TotalPages && len(items) < 100 {
			break
		}
	}
	return ids, nil
}

// reconcile lists the agent's rooms, leaves vanished ones, joins new ones
// and drains every room's unprocessed messages. The rooms already known are
// drained while the list is read, not after it: a list call that waits on
// the platform (a 429 with a long Retry-After) or fails must not hold their
// pushes.
func (s *session) reconcile(ctx context.Context) error {
	// Only rooms known before the list was read can have vanished from it: a
	// room_added that races the list must not be left again.
	s.mu.Lock()
	before := make(map[string]*room, len(s.rooms))
	for id, r := range s.rooms {
		before[id] = r
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	var found, rooms atomic.Int64
	start := func(r *room, join bool) { // bounded by sem; never from two goroutines at once
		r.mu.Lock()
		r.draining = true // pushes wait for this catch-up (new rooms start held)
		r.mu.Unlock()
		rooms.Add(1)
		s.sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-s.sem }()
			if join && !s.joinRoom(ctx, r) {
				return
			}
			found.Add(int64(s.drain(ctx, r)))
		})
	}
	var known sync.WaitGroup
	known.Go(func() {
		for _, r := range before {
			start(r, false)
		}
	})
	ids, err := s.listChats(ctx)
	known.Wait()
	if err == nil {
		for id, r := range before {
			if !ids[id] {
				s.removeRoomIf(id, r)
			}
		}
		for id := range ids {
			if before[id] != nil {
				continue // being drained already
			}
			r, isNew := s.room(id)
			start(r, isNew)
		}
	}
	wg.Wait()
	if err != nil {
		return err
	}
	s.lifecycle(subjects.LifecycleGapFilled, map[string]any{"count": found.Load(), "rooms": rooms.Load()})
	return ctx.Err()
}

// room returns the room with id, creating it (draining, not yet joined).
func (s *session) room(id string) (*room, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.rooms[id]; ok {
		return r, false
	}
	r := &room{id: id, draining: true, idleAt: time.Now()}
	r.chat = s.sock.Channel("chat_room:"+id, nil, func(ev string, p json.RawMessage) { s.onRoomMessage(r, ev, p) })
	r.parts = s.sock.Channel("room_participants:"+id, nil, func(ev string, p json.RawMessage) { s.onParticipants(r, ev, p) })
	s.rooms[id] = r
	return r, true
}

// addRoom handles room_added: join and drain in the background (never on
// the socket's reader goroutine, which must keep reading join replies).
func (s *session) addRoom(ctx context.Context, id string) {
	r, isNew := s.room(id)
	if !isNew {
		return
	}
	s.wg.Go(func() {
		s.sem <- struct{}{}
		defer func() { <-s.sem }()
		if s.joinRoom(ctx, r) {
			s.drain(ctx, r)
		}
	})
}

// joinRoom joins both room channels concurrently; on failure the room is
// dropped (one bad room never aborts the others).
func (s *session) joinRoom(ctx context.Context, r *room) bool {
	var chatErr, partsErr error
	var wg sync.WaitGroup
	wg.Go(func() { _, chatErr = r.chat.Join(ctx) })
	wg.Go(func() { _, partsErr = r.parts.Join(ctx) })
	wg.Wait()
	if err := errors.Join(chatErr, partsErr); err != nil {
		if ctx.Err() == nil {
			s.log.Warn().Err(err).Str("room", r.id).Msg("cannot join room; skipping it")
		}
		s.removeRoomIf(r.id, r)
		return false
	}
	return true
}

func (s *session) removeRoom(id string) { s.removeRoomIf(id, nil) }

// removeRoomIf leaves room id, if it is still want (any room when want is nil).
func (s *session) removeRoomIf(id string, want *room) {
	s.mu.Lock()
	r, ok := s.rooms[id]
	if ok && (want == nil || r == want) {
		delete(s.rooms, id)
	} else {
		ok = false
	}
	s.mu.Unlock()
	if !ok {
		return
	}
	s.wg.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = r.chat.Leave(ctx)
		_ = r.parts.Leave(ctx)
	})
}

// rejoinWait bounds drain's wait for its room's channel to be joined.
const rejoinWait = 15 * time.Second

// drain publishes the room's unprocessed messages oldest first, then the
// live pushes held meanwhile, then lets pushes through. It returns how many
// messages catch-up found that had not been published yet.
func (s *session) drain(ctx context.Context, r *room) int {
	r.mu.Lock()
	epoch := r.epoch
	r.mu.Unlock()
	// The list must start once the room's channel is joined again after a
	// reconnect: a message posted after the list but before the platform
	// had the rejoin would be neither listed nor pushed. Past rejoinWait
	// (a rejoin that does not come) the list goes ahead; a refused rejoin
	// drops the room elsewhere.
	wctx, cancel := context.WithTimeout(ctx, rejoinWait)
	_ = r.chat.WaitJoined(wctx)
	cancel()
	found := 0
	emitted := map[string]bool{}
	cursor := ""
	for ctx.Err() == nil {
		path := chatPath(r.id) + "/messages?limit=100"
		if cursor != "" {
			path += "&cursor=" + url.QueryEscape(cursor)
		}
		msgs, meta, err := s.catchUpList(ctx, path)
		if err != nil {
			var pe *connector.PlatformError
			if errors.As(err, &pe) && pe.Status == http.StatusNotFound {
				s.removeRoom(r.id)
			} else if ctx.Err() == nil {
				// The room stays held: its pushes may be newer than the
				// messages the retry will find.
				s.log.Warn().Err(err).Str("room", r.id).Msg("catch-up failed; will retry")
				time.AfterFunc(5*time.Second, s.requestResync)
			}
			return found
		}
		for _, raw := range msgs {
			ev, ok := s.messageEvent(r.id, raw, true)
			if !ok || emitted[ev.Key] || s.c.seen.has(ev.Key) {
				continue
			}
			emitted[ev.Key] = true
			if !s.emit(ctx, ev) {
				return found
			}
			found++
		}
		if !meta.HasMore || meta.NextCursor == "" || meta.NextCursor == cursor {
			break
		}
		cursor = meta.NextCursor
	}
	s.flush(ctx, r, emitted, epoch)
	return found
}

// flush releases the pushes held while draining, then lets pushes through.
// If the socket was lost since the catch-up began (epoch moved), the
// pushes held now may be newer than messages the next catch-up will find:
// they stay held for it.
func (s *session) flush(ctx context.Context, r *room, emitted map[string]bool, epoch uint64) {
	for {
		r.mu.Lock()
		if r.epoch != epoch {
			r.mu.Unlock()
			// Held for the next catch-up: make sure one comes (a resync
			// asked for by the reopen may have run before this one ended).
			s.requestResync()
			return
		}
		buf := r.buffer
		r.buffer = nil
		if len(buf) == 0 {
			over := r.overflow
			r.overflow = false
			r.draining = over // a dropped push is older than later ones: stay held for the next catch-up
			r.idleAt = time.Now()
			r.mu.Unlock()
			if over {
				s.log.Warn().Str("room", r.id).Msg("live pushes overflowed during catch-up; catching up again")
				s.requestResync()
			}
			return
		}
		r.mu.Unlock()
		for _, it := range buf {
			if emitted[it.ev.Key] || s.c.seen.has(it.ev.Key) {
				continue
			}
			emitted[it.ev.Key] = true
			if !s.emit(ctx, it.ev) {
				return
			}
		}
	}
}

// idleCheck polls /messages/next for rooms quiet longer than IdleResync:
// pushes are best effort, and a message found that way is drained.
func (s *session) idleCheck(ctx context.Context) {
	now := time.Now()
	s.mu.Lock()
	var due []*room
	for _, r := range s.rooms {
		r.mu.Lock()
		if !r.draining && now.Sub(r.idleAt) >= s.c.opts.IdleResync {
			r.idleAt = now
			due = append(due, r)
		}
		r.mu.Unlock()
	}
	s.mu.Unlock()
	for _, r := range due {
		// One attempt, no in-client wait: a refused poll is simply made
		// again next time, and a Retry-After here must not hold the sync
		// loop (and so every room's catch-up after a reconnect).
		status, data, err := s.c.rest.call(ctx, false, http.MethodGet, chatPath(r.id)+"/messages/next", nil)
		if err != nil || status == http.StatusNoContent || data == nil {
			continue
		}
		ev, ok := s.messageEvent(r.id, data, true)
		if !ok || s.c.seen.has(ev.Key) {
			continue
		}
		s.log.Info().Str("room", r.id).Msg("idle room has an unpublished message; catching up")
		r.mu.Lock()
		r.draining = true
		r.mu.Unlock()
		s.sem <- struct{}{}
		s.drain(ctx, r)
		<-s.sem
	}
}
