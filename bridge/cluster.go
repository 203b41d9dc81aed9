package bridge

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/bridgeworks/bridge/subjects"
)

// MembersBucket is the KV bucket where each running bridge process keeps a
// key (its instance id) alive while it runs, under prefix.
func MembersBucket(prefix string) string { return subjects.StreamName(prefix, "MEMBERS") }

// cluster is this process's view of the others: the live members (each
// renews a key in the members bucket every lease TTL/3) and every
// connection's lease, both kept current by KV watches. From the members it
// derives which process each connection is assigned to: rendezvous hashing
// with bounded loads (see assign), so a process joining or leaving moves
// only about its share.
type cluster struct {
	members jetstream.KeyValue
	leases  jetstream.KeyValue
	self    holder
	ttl     time.Duration
	log     zerolog.Logger

	mu    sync.Mutex
	seen  map[string]memberSeen // instance → its last heartbeat seen here
	held  map[string]leaseSeen  // connection → its lease as last seen
	conns []string              // the connections to assign, sorted
	wake  chan struct{}         // closed and replaced on every change
	// assigned is assign(conns, assignedTo), kept until either changes:
	// every connection asks for its assignee, and each answer would
	// otherwise divide all connections again.
	assigned   map[string]string
	assignedTo []string
	// handoff is one slot: a process hands over one connection at a time,
	// so a joining process brings no herd of reconnects.
	handoff chan struct{}

	movesMu sync.Mutex
	watched map[string]*moveWatch // connections running here (see moves)
}

// member is a members bucket value.
type member struct {
	holder
	Since time.Time `json:"since"`
}

type memberSeen struct {
	member
	at time.Time // when its last heartbeat was seen here
}

// leaseSeen is a connection's lease as the lease watch last saw it; a
// zero holder means free since at.
type leaseSeen struct {
	holder holder
	since  time.Time // when this holder took it (from the value), or when it became free
	rev    uint64
	at     time.Time // last renewal (the entry's time)
}

func openCluster(ctx context.Context, js jetstream.JetStream, leases jetstream.KeyValue, prefix string, self holder, ttl time.Duration, replicas int, log zerolog.Logger) (*cluster, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: MembersBucket(prefix), Description: "bridge: the running bridge processes",
		TTL: ttl, History: 1, Storage: jetstream.FileStorage, Replicas: replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("members bucket: %w", err)
	}
	return &cluster{members: kv, leases: leases, self: self, ttl: ttl, log: log,
		seen: map[string]memberSeen{}, held: map[string]leaseSeen{},
		wake: make(chan struct{}), handoff: make(chan struct{}, 1), watched: map[string]*moveWatch{}}, nil
}

func (c *cluster) heartbeat(ctx context.Context) error {
	v, _ := json.Marshal(member{holder: c.self, Since: time.Now().UTC()})
	hctx, cancel := context.WithTimeout(ctx, max(c.ttl/3, 100*time.Millisecond))
	defer cancel()
	if _, err := c.members.Put(hctx, c.self.Instance, v); err != nil {
		return fmt.Errorf("member heartbeat: %w", err)
	}
	c.mu.Lock()
	c.seen[c.self.Instance] = memberSeen{member: member{holder: c.self}, at: time.Now()}
	c.mu.Unlock()
	return nil
}

// run heartbeats and watches both buckets until ctx ends; then it deletes
// this process's member key at once, so the others count it out before its
// leases are released.
func (c *cluster) run(ctx context.Context, synced chan<- struct{}) {
	var wg sync.WaitGroup
	var once [2]sync.Once
	var ready sync.WaitGroup
	ready.Add(2)
	wg.Go(func() { c.watch(ctx, c.members, func() { once[0].Do(ready.Done) }, c.memberUpdate) })
	wg.Go(func() { c.watch(ctx, c.leases, func() { once[1].Do(ready.Done) }, c.leaseUpdate) })
	wg.Go(func() {
		ready.Wait()
		close(synced)
	})
	every := max(c.ttl/3, 10*time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-t.C:
			if err := c.heartbeat(ctx); err != nil && ctx.Err() == nil {
				c.log.Warn().Err(err).Msg("member heartbeat failed; retrying")
			}
			c.changed() // members whose heartbeats stopped age out
		}
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	_ = c.members.Delete(dctx, c.self.Instance)
	cancel()
	wg.Wait()
}

// watch follows kv until ctx ends, watching again when a watch ends.
func (c *cluster) watch(ctx context.Context, kv jetstream.KeyValue, synced func(), update func(jetstream.KeyValueEntry)) {
	for ctx.Err() == nil {
		w, err := kv.WatchAll(ctx)
		if err != nil {
			if ctx.Err() == nil {
				c.log.Warn().Err(err).Str("bucket", kv.Bucket()).Msg("watch failed; retrying")
			}
			select {
			case <-ctx.Done():
			case <-time.After(max(c.ttl/5, 50*time.Millisecond)):
			}
			continue
		}
		for e := range w.Updates() {
			if e == nil {
				synced()
				continue
			}
			update(e)
		}
		_ = w.Stop()
	}
}

func (c *cluster) memberUpdate(e jetstream.KeyValueEntry) {
	c.mu.Lock()
	if e.Operation() != jetstream.KeyValuePut {
		delete(c.seen, e.Key())
	} else {
		var m member
		if json.Unmarshal(e.Value(), &m) == nil && m.Instance != "" {
			c.seen[e.Key()] = memberSeen{member: m, at: time.Now()}
		}
	}
	c.mu.Unlock()
	c.changed()
}

// leaseUpdate records a lease's new state. Only a change of holder (or a
// lease freed) wakes the view's waiters: a renewal changes nothing they
// decide on, and with 10,000 leases renewals come 2,000 a second, each of
// which would wake the move check and every connection standing by.
func (c *cluster) leaseUpdate(e jetstream.KeyValueEntry) {
	c.mu.Lock()
	old, known := c.held[e.Key()]
	var now leaseSeen
	freed := e.Operation() != jetstream.KeyValuePut
	if freed {
		now = leaseSeen{since: time.Now().UTC(), rev: e.Revision(), at: e.Created()}
	} else {
		v := parseLeaseValue(e.Value())
		now = leaseSeen{holder: v.holder, since: v.Since, rev: e.Revision(), at: e.Created()}
	}
	c.held[e.Key()] = now
	c.mu.Unlock()
	if freed || !known || old.holder != now.holder || !old.since.Equal(now.since) {
		c.changed()
	}
}

// changed wakes everyone waiting on the view.
func (c *cluster) changed() {
	c.mu.Lock()
	close(c.wake)
	c.wake = make(chan struct{})
	c.mu.Unlock()
}

// woken is closed at the next change of the view.
func (c *cluster) woken() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.wake
}

// setConns sets the connections to assign (the enabled ones of the config).
func (c *cluster) setConns(names []string) {
	c.mu.Lock()
	c.conns = slices.Sorted(slices.Values(names))
	c.assigned = nil
	c.mu.Unlock()
	c.changed()
}

// live lists the members whose heartbeat was seen within the TTL; this
// process always counts.
func (c *cluster) liveLocked(now time.Time) []string {
	live := []string{c.self.Instance}
	for id, m := range c.seen {
		if id != c.self.Instance && now.Sub(m.at) < c.ttl {
			live = append(live, id)
		}
	}
	slices.Sort(live)
	return live
}

// assignmentLocked is assign(c.conns, live), computed again only when
// live or the connections changed.
func (c *cluster) assignmentLocked(live []string) map[string]string {
	if c.assigned == nil || !slices.Equal(live, c.assignedTo) {
		c.assigned, c.assignedTo = assign(c.conns, live), live
	}
	return c.assigned
}

// assignee names the live member connection conn is assigned to.
func (c *cluster) assignee(conn string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.assignmentLocked(c.liveLocked(time.Now()))[conn]
}

// mayTake says whether this process should try to take conn's lease: it is
// assigned here, or its lease has been free for a whole TTL (its assignee
// does not take it: it may run a config without it).
func (c *cluster) mayTake(conn string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	if a := c.assignmentLocked(c.liveLocked(now))[conn]; a == "" || a == c.self.Instance {
		return true
	}
	l, ok := c.held[conn]
	return ok && l.holder.Owner == "" && now.Sub(l.since) >= c.ttl
}

// holderOf is conn's lease holder as last seen, zero when free or unknown.
func (c *cluster) holderOf(conn string) holder {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.held[conn].holder
}

// handOver waits, after conn's lease was released here, until a process
// holds it or a TTL passed, then frees the handoff slot.
func (c *cluster) handOver(ctx context.Context, conn string) {
	defer func() { <-c.handoff }()
	deadline := time.After(c.ttl)
	for {
		w := c.woken()
		if c.holderOf(conn).Owner != "" { // taken (here too, when assigned back)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-deadline:
			return
		case <-w:
		}
	}
}

// ClusterLease is one connection's lease across the cluster.
type ClusterLease struct {
	Connection string    `json:"connection"`
	Holder     string    `json:"holder,omitempty"`   // "owner/instance"; empty when free
	Since      time.Time `json:"since,omitzero"`     // when the holder took it
	Revision   uint64    `json:"revision,omitempty"` // the lease key's revision
	Renewed    time.Time `json:"renewed,omitzero"`   // its last renewal
	Assigned   string    `json:"assigned,omitempty"` // the instance it is assigned to
}

// ClusterMember is one running bridge process.
type ClusterMember struct {
	Owner    string    `json:"owner"`
	Instance string    `json:"instance"`
	Since    time.Time `json:"since,omitzero"`
	Holds    int       `json:"holds"`
}

// snapshot is the cluster as seen here: members and every connection's lease.
func (c *cluster) snapshot() ([]ClusterMember, []ClusterLease) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	live := c.liveLocked(now)
	a := c.assignmentLocked(live)
	holds := map[string]int{}
	var leases []ClusterLease
	names := slices.Clone(c.conns)
	for n := range c.held {
		if _, ok := a[n]; !ok && !slices.Contains(names, n) { // assigned ones are in conns already
			names = append(names, n)
		}
	}
	slices.Sort(names)
	for _, n := range names {
		l := c.held[n]
		cl := ClusterLease{Connection: n, Assigned: a[n]}
		if l.holder.Owner != "" { // a holder gone without releasing shows until its key expires
			cl.Holder, cl.Since, cl.Revision, cl.Renewed = l.holder.String(), l.since, l.rev, l.at.UTC()
			holds[l.holder.Instance]++
		}
		leases = append(leases, cl)
	}
	var ms []ClusterMember
	for _, id := range live {
		m := c.seen[id]
		ms = append(ms, ClusterMember{Owner: m.Owner, Instance: id, Since: m.Since, Holds: holds[id]})
	}
	return ms, leases
}

// assign divides conns across members by rendezvous hashing with bounded
// loads: each connection ranks the members by a hash of (connection,
// member), and, taken in an order fixed by its own hash, goes to the
// highest-ranked member still below ceil(len(conns)/len(members)). Every
// process computes the same answer from the same members, a member joining
// or leaving moves about its share, and the loads differ by at most one.
func assign(conns, members []string) map[string]string {
	out := make(map[string]string, len(conns))
	if len(members) == 0 {
		return out
	}
	limit := (len(conns) + len(members) - 1) / len(members)
	type keyed struct {
		name string
		h    uint64
	}
	order := make([]keyed, len(conns))
	for i, c := range conns {
		order[i] = keyed{c, hrw(c, "")}
	}
	slices.SortFunc(order, func(a, b keyed) int { return cmp.Or(cmp.Compare(a.h, b.h), cmp.Compare(a.name, b.name)) })
	load := make(map[string]int, len(members))
	ranked := make([]keyed, len(members))
	for _, conn := range order {
		for i, m := range members {
			ranked[i] = keyed{m, hrw(conn.name, m)}
		}
		slices.SortFunc(ranked, func(a, b keyed) int { return cmp.Or(cmp.Compare(b.h, a.h), cmp.Compare(a.name, b.name)) })
		for _, m := range ranked {
			if load[m.name] < limit {
				out[conn.name] = m.name
				load[m.name]++
				break
			}
		}
	}
	return out
}

// hrw is the rendezvous weight of (conn, member): FNV-1a, then mixed
// (splitmix64's finaliser) so short, similar names spread evenly.
func hrw(conn, member string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(conn))
	_, _ = h.Write([]byte{0})
	_, _ = h.Write([]byte(member))
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// leaseValue is a lease key's value: the holder, and when it took the lease.
type leaseValue struct {
	holder
	Since time.Time `json:"since,omitzero"`
}

func parseLeaseValue(b []byte) leaseValue {
	var v leaseValue
	if json.Unmarshal(b, &v) != nil || v.Owner == "" {
		return leaseValue{holder: parseHolder(b)}
	}
	return v
}
