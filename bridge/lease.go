package bridge

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/rs/zerolog"

	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/subjects"
)

// errLeaseLost ends a connection's run when another replica took its lease.
var errLeaseLost = errors.New("lease lost")

// leases keep two bridge processes from holding the same platform
// connection: a connection runs only in the process holding its key in a
// JetStream KV bucket whose keys expire TTL after their last renewal.
//
// A key's value names the holding process, not only its owner: the owner
// (lease.owner, default the host name) and an instance id drawn when the
// process starts. Two processes started with the same config on one host
// share the owner but not the instance, so each sees the other's key as
// someone else's. A restarted process (same owner, new instance) may take a
// key of its own owner at once only when the earlier process is provably
// gone: every process answers requests on subjects.LeaseAlive(prefix,
// instance) for as long as it is connected, and "no responders" there is the
// proof. An answer, a timeout or any other error means "maybe alive": the key
// is waited out like any other holder's.
//
// Residual risk: a holder that is alive but cut off from NATS has no
// subscription on the server either, so a restarted process of the same
// owner takes its key at once. The cut-off holder can then neither fetch
// commands nor store events (it has no NATS), its renewals fail, and it stops
// the connection at the latest TTL after its last renewal; as soon as it is
// back its next renewal carries a revision that no longer matches and it
// stops at once (errLeaseLost). The overlap is bounded by the TTL and limited
// to work it already had in hand. In a NATS cluster, a subscription made on
// one server reaches the others after a route round trip; a process
// subscribes and flushes before it takes any lease, and a competing restart
// is at least one lease poll (TTL/5) behind.
type leases struct {
	kv    jetstream.KeyValue
	nc    *nats.Conn
	self  holder
	value []byte // self, encoded
	ttl   time.Duration
	alive string // this process's LeaseAlive subject
	sub   *nats.Subscription
	// prefix of the LeaseAlive subjects of other processes.
	prefix string
	epoch  time.Time // validity deadlines count from here (monotonic)

	keptMu sync.Mutex
	kept   map[*lease]*kept // the leases held here, renewed by renew

	// starts paces the connections started here under a lease just taken
	// (nil: not paced); see pace.
	starts *connector.DialLimiter
	// ramp lowers the collector's target while connections start (nil: off).
	ramp *gcRamp

	// lateMu guards lateCh: non-nil (and closed when it clears) while a
	// renewal round has run longer than half its interval; see pace.
	lateMu sync.Mutex
	lateCh chan struct{}
	// held counts the starts waiting for the renewals to catch up.
	held atomic.Int64
}

// pace waits until this process may start one more connection under a
// lease it holds: a token of starts taken while no renewal round runs
// late. A connection's start-up work (its consumer, its socket, its
// catch-up) competes with the renewals of every lease held here: started at
// the dial rate, and never while those renewals fall behind, a start or a
// take-over of thousands of connections cannot starve the renewals until
// leases are given up, restarted, and given up again. One call per start,
// whatever tries came before the lease was taken.
func (l *leases) pace(ctx context.Context) error {
	for {
		if err := l.starts.Wait(ctx); err != nil {
			return err
		}
		l.lateMu.Lock()
		late := l.lateCh
		l.lateMu.Unlock()
		if late == nil {
			l.ramp.started()
			return nil
		}
		// Queue again for a token once the renewals caught up, so the
		// starts held meanwhile go at the pace, not all at once.
		l.held.Add(1)
		select {
		case <-ctx.Done():
			l.held.Add(-1)
			return ctx.Err()
		case <-late:
			l.held.Add(-1)
		}
	}
}

// setLate says whether the renewals run late.
func (l *leases) setLate(late bool) {
	l.lateMu.Lock()
	defer l.lateMu.Unlock()
	switch {
	case late && l.lateCh == nil:
		l.lateCh = make(chan struct{})
	case !late && l.lateCh != nil:
		close(l.lateCh)
		l.lateCh = nil
	}
}

// holder names the process holding a lease.
type holder struct {
	Owner    string `json:"owner"`
	Instance string `json:"instance"`
}

func (h holder) String() string {
	if h.Instance == "" {
		return h.Owner
	}
	return h.Owner + "/" + h.Instance
}

// parseHolder reads a lease value; a value that is not this JSON (an older
// bridge wrote the owner alone) is an owner with no known instance, which is
// never taken for this process and never probed.
func parseHolder(b []byte) holder {
	var h holder
	if json.Unmarshal(b, &h) != nil || h.Owner == "" {
		return holder{Owner: string(b)}
	}
	return h
}

// LeaseBucket is the KV bucket of connection leases under prefix.
func LeaseBucket(prefix string) string { return subjects.StreamName(prefix, "LEASES") }

// openLeases opens the lease bucket and starts answering on this process's
// LeaseAlive subject; close stops answering.
func openLeases(ctx context.Context, js jetstream.JetStream, nc *nats.Conn, prefix, owner string, ttl time.Duration, replicas int) (*leases, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: LeaseBucket(prefix), Description: "bridge: which replica holds each connection",
		TTL: ttl, History: 1, Storage: jetstream.FileStorage, Replicas: replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("lease bucket: %w", err)
	}
	self := holder{Owner: owner, Instance: nuid.Next()}
	value, _ := json.Marshal(self)
	l := &leases{kv: kv, nc: nc, self: self, value: value, ttl: ttl, prefix: prefix, alive: subjects.LeaseAlive(prefix, self.Instance), epoch: time.Now(),
		kept: map[*lease]*kept{}}
	l.sub, err = nc.Subscribe(l.alive, func(m *nats.Msg) {
		if m.Reply != "" {
			_ = m.Respond(value)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("lease liveness subscription: %w", err)
	}
	// The subscription must be on the server before any key names us.
	fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := nc.FlushWithContext(fctx); err != nil {
		_ = l.sub.Unsubscribe()
		return nil, fmt.Errorf("lease liveness subscription: %w", err)
	}
	return l, nil
}

// close stops answering liveness requests: called once every lease is
// released, so a successor may take over at once.
func (l *leases) close() { _ = l.sub.Unsubscribe() }

// gone reports whether the process named by instance is provably gone: a
// liveness request to it finds no responders.
func (l *leases) gone(ctx context.Context, instance string) bool {
	ctx, cancel := context.WithTimeout(ctx, max(l.ttl/5, 200*time.Millisecond))
	defer cancel()
	_, err := l.nc.RequestWithContext(ctx, subjects.LeaseAlive(l.prefix, instance), nil)
	return errors.Is(err, nats.ErrNoResponders)
}

// lease is one connection's lease, held or wanted.
type lease struct {
	l   *leases
	key string
	rev uint64
	// value is what the key holds while held here: this process and when
	// it took the lease.
	value []byte
	since time.Time
	// valid is how long after l.epoch this process may still act for the
	// connection (nanoseconds; 0 when not held): TTL minus a margin after
	// the request that last took or renewed the key was sent. The key
	// cannot expire on the server before then, so no other process can
	// hold it yet. See fence.
	valid atomic.Int64
	// sent is when the request that last took or renewed the key was sent
	// (nanoseconds after l.epoch).
	sent atomic.Int64
	// health hears the outcome of each lease call: nil when JetStream
	// answered (even "held by another"), the error when it did not.
	health func(error)
}

func (l *leases) lease(conn string) *lease { return &lease{l: l, key: conn, health: func(error) {}} }

// errFenced refuses an action of a process whose lease may have passed to
// another.
var errFenced = errors.New("lease no longer valid here")

// fence returns nil while this process may act for the connection, and
// errFenced (naming the revision) once its lease is released or past the
// validity its last renewal gave.
func (ls *lease) fence() error {
	v := ls.valid.Load()
	if v != 0 && time.Since(ls.l.epoch) < time.Duration(v) {
		return nil
	}
	return fmt.Errorf("connection %s: %w (revision %d)", ls.key, errFenced, atomic.LoadUint64(&ls.rev))
}

// renewed records a take or renewal whose request was sent at sent.
func (ls *lease) renewed(sent time.Time, rev uint64) {
	atomic.StoreUint64(&ls.rev, rev)
	ls.sent.Store(int64(sent.Sub(ls.l.epoch)))
	margin := max(ls.l.ttl/10, 10*time.Millisecond)
	ls.valid.Store(int64(sent.Sub(ls.l.epoch) + ls.l.ttl - margin))
}

// revision is the lease key's revision while held here, 0 otherwise.
func (ls *lease) revision() uint64 { return atomic.LoadUint64(&ls.rev) }

// acquire waits until this process holds the lease. It tries only while
// may says so (nil: always), and looks again at every poll and whenever
// wake (nil: never) is closed. A key naming this process is taken over at
// once; so is a key of this owner whose process is provably gone (see
// leases). Any other key is waited out until it expires; waiting hears its
// holder (or why this process does not try) whenever that changes.
func (ls *lease) acquire(ctx context.Context, may func() (bool, string), wake func() <-chan struct{}, waiting func(holder string)) error {
	poll := max(ls.l.ttl/5, 50*time.Millisecond)
	told := ""
	tell := func(s string) {
		if s != told {
			told = s
			waiting(s)
		}
	}
	for {
		var w <-chan struct{}
		if wake != nil {
			w = wake()
		}
		try, why := true, ""
		if may != nil {
			try, why = may()
		}
		if !try {
			tell(why)
		} else if ls.try(ctx, func(h holder) { tell(h.String()) }) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-w:
		case <-time.After(poll):
		}
	}
}

// try makes one attempt at the lease; true when held.
func (ls *lease) try(ctx context.Context, held func(holder)) bool {
	ls.since = time.Now().UTC()
	ls.value, _ = json.Marshal(leaseValue{holder: ls.l.self, Since: ls.since})
	sent := time.Now()
	rev, err := ls.l.kv.Create(ctx, ls.key, ls.value)
	if err == nil {
		ls.renewed(sent, rev)
		ls.health(nil)
		return true
	}
	if !errors.Is(err, jetstream.ErrKeyExists) {
		if ctx.Err() == nil {
			ls.health(fmt.Errorf("lease %s: %w", ls.key, err))
		}
		return false
	}
	e, err := ls.l.kv.Get(ctx, ls.key)
	if err != nil {
		if ctx.Err() == nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			ls.health(fmt.Errorf("lease %s: %w", ls.key, err))
		}
		return false
	}
	ls.health(nil)
	h := parseHolder(e.Value())
	mine := h == ls.l.self
	if !mine && (h.Owner != ls.l.self.Owner || h.Instance == "" || !ls.l.gone(ctx, h.Instance)) {
		held(h)
		return false
	}
	sent = time.Now()
	rev, err = ls.l.kv.Update(ctx, ls.key, ls.value, e.Revision())
	if err != nil {
		if !isWrongRevision(err) && ctx.Err() == nil {
			ls.health(fmt.Errorf("lease %s: %w", ls.key, err))
		}
		return false // else renewed or taken meanwhile: the next poll looks again
	}
	ls.renewed(sent, rev)
	return true
}

// keep adds the held lease to the process's renewals (see leases.renew)
// until the returned stop is called. lost is called once when the lease is
// lost: another process holds the key, or no renewal succeeded for
// lease.ttl − lease.ttl/3 since the last one (a runtime timer per lease
// watches that deadline, whatever the renewal rounds are busy with, so the
// connection stops before its key can expire). stop returns the loss (nil
// if none) and waits for a renewal of this lease under way, so none lands
// after it.
func (ls *lease) keep(lost func(error)) (stop func() error) {
	k := &kept{ls: ls, lost: lost}
	k.timer = time.AfterFunc(k.untilGiveUp(), k.check)
	ls.l.keptMu.Lock()
	ls.l.kept[ls] = k
	ls.l.keptMu.Unlock()
	return func() error {
		ls.l.keptMu.Lock()
		delete(ls.l.kept, ls)
		ls.l.keptMu.Unlock()
		k.timer.Stop()
		k.mu.Lock() // a renewal of this lease under way ends first
		k.stopped = true
		k.mu.Unlock()
		return k.loss()
	}
}

// kept is one held lease's place in the renewals.
type kept struct {
	ls    *lease
	lost  func(error)
	timer *time.Timer // fires at the give-up deadline (check)
	mu    sync.Mutex  // held while the lease is renewed
	// stopped: no longer renewed (under mu).
	stopped bool

	once  sync.Once
	errMu sync.Mutex
	err   error // why the lease was lost
}

// untilGiveUp is the time left until the lease must be given up: the last
// successful take or renewal was sent lease.ttl − every ago.
func (k *kept) untilGiveUp() time.Duration {
	l := k.ls.l
	every := max(l.ttl/3, 10*time.Millisecond)
	sent := l.epoch.Add(time.Duration(k.ls.sent.Load()))
	return time.Until(sent.Add(l.ttl - every))
}

// check runs at the give-up deadline: a renewal since moved it (re-armed),
// or the lease is lost.
func (k *kept) check() {
	if left := k.untilGiveUp(); left > 0 {
		k.timer.Reset(left)
		return
	}
	k.giveUp(fmt.Errorf("%w: not renewed within %s", errLeaseLost, k.ls.l.ttl-max(k.ls.l.ttl/3, 10*time.Millisecond)))
}

// giveUp fences the lease at once and tells its loss, once.
func (k *kept) giveUp(err error) {
	k.once.Do(func() {
		k.errMu.Lock()
		k.err = err
		k.errMu.Unlock()
		k.ls.valid.Store(0) // nothing more acts for it from now on
		k.lost(err)
	})
}

func (k *kept) loss() error {
	k.errMu.Lock()
	defer k.errMu.Unlock()
	return k.err
}

// renewParallel bounds the lease renewals in flight at once. A round must
// renew every lease within TTL/3 while the server is busy (10,000 leases at
// start-up, with their connections' consumers being created): 32 at a time
// took longer than that at 10,000 and leases were given up in waves.
const renewParallel = 256

// renew renews every lease this process holds, every TTL/3, in one loop
// for the whole process (at most renewParallel calls at once), until ctx
// ends. A renewal that fails for a transient reason is tried again at the
// next round; the lease's give-up timer (see keep) decides when it is lost.
func (l *leases) renew(ctx context.Context, log zerolog.Logger) {
	every := max(l.ttl/3, 10*time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		l.keptMu.Lock()
		round := slices.Collect(maps.Values(l.kept))
		l.keptMu.Unlock()
		// The lease closest to its give-up deadline first.
		slices.SortFunc(round, func(a, b *kept) int { return cmp.Compare(a.ls.sent.Load(), b.ls.sent.Load()) })
		sem := make(chan struct{}, renewParallel)
		var wg sync.WaitGroup
		var failed atomic.Int64
		began := time.Now()
		// The round's lateness, told once at half its interval and at its
		// end, in that order (the timer's callback never lands after the
		// end's word).
		var lateMu sync.Mutex
		ended := false
		late := time.AfterFunc(every/2, func() {
			lateMu.Lock()
			defer lateMu.Unlock()
			if !ended {
				l.setLate(true)
			}
		})
		for _, k := range round {
			sem <- struct{}{}
			wg.Go(func() { // owned: waited for below
				defer func() { <-sem }()
				if !k.ls.renewOnce(ctx, k, every) {
					failed.Add(1)
				}
			})
		}
		wg.Wait()
		took := time.Since(began)
		late.Stop()
		lateMu.Lock()
		ended = true
		l.setLate(took > every/2)
		lateMu.Unlock()
		if took > every && ctx.Err() == nil {
			log.Warn().Int("leases", len(round)).Int64("failed", failed.Load()).Dur("took", took).Dur("every", every).
				Msg("lease renewals fell behind: a round took longer than its interval; leases not renewed within two intervals are given up")
		}
	}
}

// renewOnce makes one renewal of ls; false when it failed.
func (ls *lease) renewOnce(ctx context.Context, k *kept, every time.Duration) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.stopped || k.loss() != nil {
		return true
	}
	// Not cut short when the process stops: a renewal the server applied
	// but this process never heard of would leave a revision its release
	// cannot delete (the key would then be waited out).
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), every)
	defer cancel()
	sent := time.Now()
	rev, err := ls.l.kv.Update(rctx, ls.key, ls.value, ls.revision())
	switch {
	case err == nil:
		if k.loss() == nil { // given up meanwhile: stays fenced
			ls.renewed(sent, rev)
		}
		ls.health(nil)
	case ctx.Err() != nil:
	case isWrongRevision(err):
		// An update whose answer was lost (NATS restarting) moved the
		// revision: still ours if the key still names this process.
		if e, gerr := ls.l.kv.Get(rctx, ls.key); gerr == nil && parseHolder(e.Value()) == ls.l.self {
			// Its validity is not extended: the write that moved it may
			// be older than this request.
			atomic.StoreUint64(&ls.rev, e.Revision())
			ls.health(nil)
			return true
		}
		k.giveUp(fmt.Errorf("%w: %v", errLeaseLost, err))
	default:
		ls.health(fmt.Errorf("lease %s: renewal: %w", ls.key, err))
		return false
	}
	return true
}

func isWrongRevision(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == 10164) ||
		errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted)
}

// release gives the lease up so another replica can take it at once.
func (ls *lease) release(ctx context.Context) {
	ls.valid.Store(0)
	rev := ls.revision()
	if rev == 0 {
		return
	}
	err := ls.l.kv.Delete(ctx, ls.key, jetstream.LastRevision(rev))
	if err != nil && isWrongRevision(err) {
		// A renewal whose answer was lost moved the revision: still ours
		// if the key still names this process.
		if e, gerr := ls.l.kv.Get(ctx, ls.key); gerr == nil && parseHolder(e.Value()) == ls.l.self {
			_ = ls.l.kv.Delete(ctx, ls.key, jetstream.LastRevision(e.Revision()))
		}
	}
	atomic.StoreUint64(&ls.rev, 0)
}

// stale marks the lease lost here: nothing more may act for it.
func (ls *lease) stale() {
	ls.valid.Store(0)
	atomic.StoreUint64(&ls.rev, 0)
}
