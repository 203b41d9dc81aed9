package band

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/internal/phoenix"
	"github.com/bridgeworks/bridge/subjects"
)

// maxBuffered bounds the live message pushes held for one room while its
// catch-up runs. Past it a push is not held: it is still unprocessed on Band,
// so the next catch-up finds it (and a new one is scheduled).
const maxBuffered = 10000

type item struct {
	ev  connector.Event
	ack connector.AckFunc
}

// session is one socket's lifetime: from Connect to Close or a terminal error.
type session struct {
	c    *Connector
	log  *zerolog.Logger // the connector's (a copy is 112 bytes)
	sock *phoenix.Socket

	q      queue         // events waiting for Receive (pointers: values would be ~8 KiB per idle session)
	syncs  syncer        // room syncs: resyncs and the idle safety net
	opened chan struct{} // closed at the first open
	dialed chan error    // failed dials before the first open (latest first; never blocks)
	ended  chan struct{} // closed when the socket's Run returned
	halt   chan struct{} // closed by stop: nothing waits on the queue after it
	halted sync.Once
	endErr error // Run's result, set before ended is closed
	// notify is the bridge's callback for the next event or the end
	// (connector.Notifier); taken by whoever calls it first.
	notify atomic.Pointer[func()]
	// queued counts the events put on q and not yet received; with
	// notify, both atomic, an event sent while the callback is armed is
	// never missed by both emit's ring and notifyOn's check.
	queued atomic.Int32
	cancel context.CancelFunc
	wg     sync.WaitGroup
	sem    chan struct{} // bounds concurrent room joins and drains

	openOnce sync.Once
	isOpen   atomic.Bool // the socket is open (OnOpen seen, no OnClose since)
	mu       sync.Mutex
	rooms    map[string]*room
}

// room is one chat room's channels and catch-up state.
type room struct {
	id          string
	chat, parts *phoenix.Channel

	mu       sync.Mutex
	draining bool   // live message pushes are held in buffer
	epoch    uint64 // bumped at every socket loss: a catch-up that began before it must not end the hold
	buffer   []item // held live pushes, in arrival order
	overflow bool   // a push was not held; run another catch-up
	idleAt   time.Time
}

func newSession(c *Connector) *session {
	return &session{
		c: c, log: &c.log,
		opened: make(chan struct{}),
		dialed: make(chan error, 1),
		ended:  make(chan struct{}),
		halt:   make(chan struct{}),
		sem:    make(chan struct{}, c.opts.JoinParallelism),
		rooms:  map[string]*room{},
	}
}

// start opens the socket and joins the agent's channels; ctx bounds the wait
// for the socket to open.
func (s *session) start(ctx context.Context) error {
	agent := s.c.agentID()
	header := func(key string) http.Header {
		hdr := http.Header{}
		hdr.Set("x-api-key", key)
		return hdr
	}
	key := s.c.rest.currentKey()
	s.sock = phoenix.NewSocket(phoenix.Options{
		// URL names the socket in logs; every dial (DialTarget) reads the
		// key again, so a rotated key file heals without a restart, and
		// brings its own headers (no Header here: a copy kept per socket
		// that no dial would use).
		URL: s.c.socketURL(key),
		DialTarget: func() (string, http.Header, error) {
			k, err := s.c.apiKey()
			if err != nil {
				return "", nil, err
			}
			return s.c.socketURL(k), header(k), nil
		},
		// The upgrade carries the key (header and query): never follow a
		// redirect off Band's origin.
		HTTPClient:        &http.Client{CheckRedirect: connector.SameOriginRedirects},
		DialGate:          s.c.dials.Wait,
		HeartbeatInterval: s.c.opts.HeartbeatInterval,
		Heartbeats:        s.c.opts.beats,
		Backoff:           s.c.opts.Backoff,
		Logger:            *s.log,
		OnOpen:            s.onOpen,
		OnClose:           s.onClose,
		OnJoinError:       s.onJoinError,
		OnRetryAfter:      s.onRetryAfter,
	})
	sctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	control := s.sock.Channel("agent_control:"+agent, nil, s.onControl)
	rooms := s.sock.Channel("agent_rooms:"+agent, nil, func(ev string, p json.RawMessage) { s.onAgentRooms(sctx, ev, p) })
	contacts := s.sock.Channel("agent_contacts:"+agent, nil, s.onContacts)
	s.wg.Add(1)
	// The socket runs on goroutines of its own (an idle one holds a single
	// small goroutine); done comes once they all ended. stop ends it with
	// Stop, so its run needs no context to watch.
	if err := s.sock.Start(context.Background(), func(err error) {
		s.endErr = err
		close(s.ended)
		s.ring()
		s.wg.Done()
	}); err != nil {
		s.wg.Done()
		cancel()
		return fmt.Errorf("band: socket: %w", err)
	}
	fail := func(err error) error {
		_ = s.stop(context.Background())
		return err
	}
	for opened := false; !opened; {
		select {
		case <-s.opened:
			opened = true
		case err := <-s.dialed:
			// A refusal that waiting will not cure (bad key, wrong agent)
			// fails Connect so it shows on /status; rate limits and
			// outages are waited out by the socket's own backoff.
			var ue *phoenix.UpgradeError
			if errors.As(err, &ue) && ue.Status >= 400 && ue.Status < 500 && ue.Status != http.StatusTooManyRequests && ue.Status != http.StatusRequestTimeout {
				return fail(fmt.Errorf("band: socket refused: %w", err))
			}
			var re *connector.RedirectError
			if errors.As(err, &re) {
				return fail(fmt.Errorf("band: socket: %w", re))
			}
		case <-s.ended:
			return fail(fmt.Errorf("band: socket: %w", s.endErrOr(connector.ErrNotConnected)))
		case <-ctx.Done():
			return fail(fmt.Errorf("band: socket did not open: %w", ctx.Err()))
		}
	}
	// agent_control first: a failure to join it is a failed connect, as in
	// the official SDKs; the other two are joined after it.
	for _, ch := range []*phoenix.Channel{control, rooms, contacts} {
		if _, err := ch.Join(ctx); err != nil {
			return fail(fmt.Errorf("band: join %s: %w", ch.Topic(), err))
		}
	}
	s.startSync(sctx)
	return nil
}

func (s *session) endErrOr(def error) error {
	if s.endErr != nil {
		return s.endErr
	}
	return def
}

// stop ends the socket and waits for every goroutine of the session.
func (s *session) stop(ctx context.Context) error {
	s.halted.Do(func() { close(s.halt) })
	s.stopSync()
	s.sock.Stop(nil)
	s.cancel()
	done := make(chan struct{})
	go func() { // owned: ends when wg does
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("band: close: %w", ctx.Err())
	}
}

func (s *session) receive(ctx context.Context) (connector.Event, connector.AckFunc, error) {
	for {
		it, ready := s.q.take(true)
		if it != nil {
			s.queued.Add(-1)
			return it.ev, it.ack, nil
		}
		select {
		case <-ready:
		case <-s.ended:
			if it, _ := s.q.take(false); it != nil { // events received before the end still go out
				s.queued.Add(-1)
				return it.ev, it.ack, nil
			}
			return connector.Event{}, nil, s.endErrOr(connector.ErrNotConnected)
		case <-ctx.Done():
			return connector.Event{}, nil, ctx.Err()
		}
	}
}

// tryReceive is receive without the wait: ok is false when nothing is
// queued and the socket has not ended.
func (s *session) tryReceive() (connector.Event, connector.AckFunc, bool, error) {
	if it, _ := s.q.take(false); it != nil {
		s.queued.Add(-1)
		return it.ev, it.ack, true, nil
	}
	select {
	case <-s.ended:
		if it, _ := s.q.take(false); it != nil { // events received before the end still go out
			s.queued.Add(-1)
			return it.ev, it.ack, true, nil
		}
		return connector.Event{}, nil, true, s.endErrOr(connector.ErrNotConnected)
	default:
	}
	return connector.Event{}, nil, false, nil
}

// notifyOn arms ready for the next event or the end; when one is there
// already (its ring came before ready was armed), ready is called now.
func (s *session) notifyOn(ready func()) {
	s.notify.Store(&ready)
	select {
	case <-s.ended:
		s.ring()
		return
	default:
	}
	if s.queued.Load() > 0 {
		s.ring()
	}
}

// ring calls the armed notify callback, once.
func (s *session) ring() {
	if f := s.notify.Swap(nil); f != nil {
		(*f)()
	}
}

// emit hands one event to Receive, waiting while the queue is full.
func (s *session) emit(ctx context.Context, ev connector.Event) bool {
	ack := func(context.Context, error) {}
	if ev.Name == "message_created" && ev.Lifecycle == "" {
		key, gap := ev.Key, ev.GapFill
		ack = func(_ context.Context, err error) {
			if err == nil {
				s.c.seen.add(key)
				if gap {
					s.c.gapFilled.Add(1)
				}
			}
		}
	}
	it := &item{ev, ack}
	for {
		ok, space := s.q.put(it, s.c.opts.QueueSize)
		if ok {
			s.queued.Add(1)
			s.ring()
			return true
		}
		select {
		case <-space:
		case <-ctx.Done():
			return false
		case <-s.ended:
			return false
		case <-s.halt: // closing: the event is not stored; catch-up finds messages again
			return false
		}
	}
}

// lifecycle reports a change of the socket's state that the session
// recovers from by itself; the end of the session is the bridge's to report.
func (s *session) lifecycle(l subjects.Lifecycle, data map[string]any) {
	b, _ := json.Marshal(data)
	s.emit(context.Background(), connector.Event{Lifecycle: l, Data: b})
}

func (s *session) onOpen(attempt int) {
	s.openOnce.Do(func() { close(s.opened) })
	s.isOpen.Store(true)
	if attempt > 1 {
		s.lifecycle(subjects.LifecycleConnected, map[string]any{"reconnect": true})
	}
	s.requestResync()
}

func (s *session) onClose(err error) {
	if !s.isOpen.Swap(false) {
		select { // a failed dial: nothing was open; start may want to know
		case s.dialed <- err:
		default:
		}
		return
	}
	// Pushes after the reconnect wait until each room's catch-up ran.
	s.mu.Lock()
	for _, r := range s.rooms {
		r.mu.Lock()
		r.draining = true
		r.epoch++
		r.mu.Unlock()
	}
	s.mu.Unlock()
	reason := "closed"
	if err != nil {
		reason = err.Error()
	}
	if s.sock.Stopped() {
		return // the session ends: the bridge reports it, once
	}
	s.lifecycle(subjects.LifecycleDisconnected, map[string]any{"reason": reason})
}

// onRetryAfter records a refused upgrade's wait for /status.
func (s *session) onRetryAfter(err *phoenix.UpgradeError, wait time.Duration) {
	now := time.Now()
	s.c.waits.Record(connector.Wait{Since: now, Until: now.Add(wait), Asked: err.RetryAfter,
		Reason: connector.WaitReason(err.Status, "socket upgrade")})
}

func (s *session) onJoinError(topic string, err error) {
	s.log.Warn().Err(err).Str("topic", topic).Msg("rejoin refused; leaving the room")
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, r := range s.rooms {
		if r.chat.Topic() == topic || r.parts.Topic() == topic {
			delete(s.rooms, id)
		}
	}
}

// eventKey is a stable id for events without one of their own.
func eventKey(topic, event string, payload []byte) string {
	h := sha256.New()
	h.Write([]byte(topic))
	h.Write([]byte{0})
	h.Write([]byte(event))
	h.Write([]byte{0})
	h.Write(payload)
	return hex.EncodeToString(h.Sum(nil)[:16])
}

func (s *session) onControl(event string, payload json.RawMessage) {
	if event == "supersede" {
		var p struct {
			Reason  string `json:"reason"`
			Message string `json:"message"`
		}
		_ = json.Unmarshal(payload, &p)
		s.log.Error().Str("reason", p.Reason).Msg("superseded by another session for this agent")
		s.sock.Stop(connector.Permanent(fmt.Errorf("%w (%s)", connector.ErrSuperseded, p.Reason)))
		return
	}
	var p struct {
		RoomID string `json:"room_id"`
	}
	_ = json.Unmarshal(payload, &p)
	s.forward("agent_control", event, p.RoomID, payload)
}

func (s *session) onContacts(event string, payload json.RawMessage) {
	s.forward("agent_contacts", event, "", payload)
}

func (s *session) onAgentRooms(ctx context.Context, event string, payload json.RawMessage) {
	var p struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(payload, &p); err != nil || p.ID == "" {
		s.log.Warn().Str("event", event).Msg("agent_rooms push without a room id; forwarded as is")
	}
	s.forward("agent_rooms", event, p.ID, payload)
	switch event {
	case "room_added":
		if p.ID != "" {
			s.addRoom(ctx, p.ID)
		}
	case "room_removed", "room_deleted":
		if p.ID != "" {
			s.removeRoom(p.ID)
		}
	}
}

// forward emits a non-message event with a content-derived key.
func (s *session) forward(topic, event, room string, payload json.RawMessage) {
	s.emit(context.Background(), connector.Event{Room: room, Name: event, Key: eventKey(topic+":"+room, event, payload), Data: payload})
}

// onRoomMessage handles pushes on chat_room:<room>.
func (s *session) onRoomMessage(r *room, event string, payload json.RawMessage) {
	if event != "message_created" {
		s.forward("chat_room", event, r.id, payload)
		return
	}
	ev, ok := s.messageEvent(r.id, payload, false)
	if !ok {
		return
	}
	if s.c.seen.has(ev.Key) {
		return
	}
	r.mu.Lock()
	r.idleAt = time.Now()
	if r.draining {
		if len(r.buffer) < maxBuffered {
			r.buffer = append(r.buffer, item{ev: ev})
		} else {
			r.overflow = true
		}
		r.mu.Unlock()
		return
	}
	r.mu.Unlock()
	s.emit(context.Background(), ev)
}

func (s *session) onParticipants(r *room, event string, payload json.RawMessage) {
	s.forward("room_participants", event, r.id, payload)
	if event == "room_deleted" {
		s.removeRoom(r.id)
	}
}

// messageEvent builds the event of one chat message (pushed or listed).
func (s *session) messageEvent(roomID string, payload json.RawMessage, gap bool) (connector.Event, bool) {
	id, sender, insertedAt, ok := messageFields(payload)
	if !ok || id == "" {
		s.log.Warn().Str("room", roomID).Msg("message without an id; forwarded with a content key")
		return connector.Event{Room: roomID, Name: "message_created", Key: eventKey("chat_room:"+roomID, "message_created", payload), Data: payload, GapFill: gap}, true
	}
	if sender != "" && sender == s.c.agentID() {
		return connector.Event{}, false // the agent's own message
	}
	t, _ := time.Parse(time.RFC3339Nano, insertedAt) // zero (receive time) when absent or odd
	// messageFields checked the whole payload: it is valid JSON.
	return connector.Event{Room: roomID, Name: "message_created", Key: id, Time: t, Data: payload, GapFill: gap, ValidJSON: true}, true
}

func jsonUnmarshal(data []byte, v any, what string) error {
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("decode %s: %w", what, err)
	}
	return nil
}
