package bridge

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/bridgeworks/bridge/subjects"
)

// PublishedBucket is the KV bucket of the events stored in BRIDGE_EVENTS
// under prefix, kept as long as the stream keeps events
// (nats.events_max_age).
//
// JetStream's duplicate window (nats.duplicate_window) and a connector's
// memory of what it published stop a repeated event only for so long, and
// not across a restart. Catch-up after a (re)connect finds again every
// platform message nobody marked processed, however old: before publishing
// such an event (connector.Event.GapFill) the publisher asks this bucket,
// and an event already stored is acknowledged without being stored again.
// Live events are not looked up (the window covers a push repeated by the
// platform); every stored event is recorded without waiting for the write.
//
// An event with the platform's time is recorded in a batch: one key per
// run of settled events of one connection, room and minute of that time,
// <slot>.<token>, whose value lists their ids, one a line (slotKey). A
// lookup reads the keys of the event's slot (one consumer, kept for
// slotCacheTTL) instead of one key per id, so storing N events in one
// burst costs one write, not N. An event without a time, or recorded by an
// earlier version, has a key of its own: the SHA-256 of its id
// (publishedKey).
func PublishedBucket(prefix string) string { return subjects.StreamName(prefix, "PUBLISHED") }

// publishedStore is the bucket of PublishedBucket; nil records nothing and
// finds nothing.
type publishedStore struct {
	js     jetstream.JetStream
	kv     jetstream.KeyValue
	stream string // the bucket's stream
	prefix string // "$KV.<bucket>."
}

func openPublished(ctx context.Context, js jetstream.JetStream, prefix string, ttl time.Duration, replicas int) (*publishedStore, error) {
	name := PublishedBucket(prefix)
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: name, Description: "bridge: ids of the events stored in the events stream",
		TTL: ttl, History: 1, Storage: jetstream.FileStorage, Replicas: replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("published-events bucket: %w", err)
	}
	return &publishedStore{js: js, kv: kv, stream: "KV_" + name, prefix: "$KV." + name + "."}, nil
}

// publishedKey is the KV key of event id (ids hold characters keys may not).
func publishedKey(id string) string { return string(appendPublishedKey(nil, id)) }

// appendPublishedKey appends the KV key of event id to b.
func appendPublishedKey(b []byte, id string) []byte {
	h := sha256.Sum256([]byte(id))
	return hex.AppendEncode(b, h[:])
}

// has reports whether event id was stored: its own key, or its slot's
// batches when t (the platform's time) is set. cache keeps the slots read.
func (s *publishedStore) has(ctx context.Context, cache *slotCache, conn, room string, t time.Time, id string) (bool, error) {
	if s == nil {
		return false, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	// A slot that cannot be read does not end the lookup: the id's own key
	// may still say it is stored; only when that says no too does the
	// slot's error stand (the caller cannot tell, and publishes again).
	var slotErr error
	if !t.IsZero() {
		for _, slot := range lookupSlots(conn, room, t) {
			ids, err := cache.ids(ctx, s, slot, time.Now())
			if err != nil {
				slotErr = err
				continue
			}
			if _, ok := ids[id]; ok {
				return true, nil
			}
		}
	}
	_, err := s.kv.Get(ctx, publishedKey(id))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, jetstream.ErrKeyNotFound) && slotErr == nil:
		return false, nil
	case errors.Is(err, jetstream.ErrKeyNotFound):
		err = slotErr
	}
	return false, fmt.Errorf("published-events lookup: %w", err)
}

// record notes that event id is stored, under a key of its own, without
// waiting for the write: a lost one only lets a later catch-up publish the
// event again, and the stream's duplicate window still catches that for a
// while.
func (s *publishedStore) record(id string) error {
	if s == nil {
		return nil
	}
	// A plain publish: the KV stream stores it like any other write, and
	// nothing reads a confirmation (asking for one costs the server a reply
	// and the client a dispatch per event).
	var buf [160]byte // on the stack for any prefix up to 90 bytes
	subj := appendPublishedKey(append(buf[:0], s.prefix...), id)
	if err := s.js.Conn().Publish(string(subj), []byte{'1'}); err != nil {
		return fmt.Errorf("published-events record: %w", err)
	}
	return nil
}

// slotWidth is the span of platform time whose events of one room share
// a slot.
const slotWidth = time.Minute

// slotKey is the key prefix of the batches of conn's room for the minute
// of platform time t.
func slotKey(conn, room string, t time.Time) string {
	h := sha256.New()
	h.Write([]byte(conn))
	h.Write([]byte{0})
	h.Write([]byte(room))
	h.Write([]byte{0})
	h.Write(strconv.AppendInt(nil, slotMinute(t), 10))
	return hex.EncodeToString(h.Sum(nil))
}

// slotMinute numbers the slot of platform time t.
func slotMinute(t time.Time) int64 { return t.Unix() / int64(slotWidth/time.Second) }

// lookupSlots are the slots to read for an event at t: its own, and the
// neighbour when t is within a second of the edge (a platform that writes
// the time at another precision elsewhere rounds it there).
func lookupSlots(conn, room string, t time.Time) []string {
	slots := []string{slotKey(conn, room, t)}
	for _, d := range []time.Duration{-time.Second, time.Second} {
		if k := slotKey(conn, room, t.Add(d)); !slices.Contains(slots, k) {
			slots = append(slots, k)
		}
	}
	return slots
}

// batchable reports whether id can be recorded in a batch: the event has
// the platform's time, and the id no line break (the value's separator).
func batchable(t time.Time, id string) bool {
	return !t.IsZero() && !strings.ContainsRune(id, '\n')
}

// maxBatchIDs and maxBatchBytes bound one batch: the ids a kill -9 can
// leave unrecorded are those of one batch at most (and of batchLinger).
const (
	maxBatchIDs   = publishWindow
	maxBatchBytes = 64 << 10
)

// publishedBatch gathers the ids of settled events by slot until flush
// writes them, one key per slot: the settler flushes it once it has waited
// batchLinger, when it is full, and before the settler leaves. One
// goroutine uses it (the settler's).
type publishedBatch struct {
	slots map[string][]byte // slot key → ids, one a line
	n     int               // ids
	size  int               // bytes
	since time.Time         // when the first id came
	// the last slot added to, so a run of one room's events hashes once
	lastRoom string
	lastMin  int64
	lastKey  string
}

// add notes id under its slot; it reports whether the batch is full.
func (b *publishedBatch) add(conn, room string, t time.Time, id string) (full bool) {
	if b.slots == nil {
		b.slots = map[string][]byte{}
	}
	if b.n == 0 {
		b.since = time.Now()
	}
	m := slotMinute(t)
	if b.lastKey == "" || room != b.lastRoom || m != b.lastMin {
		b.lastRoom, b.lastMin, b.lastKey = room, m, slotKey(conn, room, t)
	}
	k := b.lastKey
	v := b.slots[k]
	if len(v) > 0 {
		v = append(v, '\n')
	}
	b.slots[k] = append(v, id...)
	b.n++
	b.size += len(id) + 1
	return b.n >= maxBatchIDs || b.size >= maxBatchBytes
}

// flush writes the batch, one plain publish per slot (see record), and
// empties it.
func (s *publishedStore) flush(b *publishedBatch) error {
	if len(b.slots) == 0 {
		return nil
	}
	defer func() { *b = publishedBatch{} }() // nothing kept while the connection idles
	if s == nil {
		return nil
	}
	var errs []error
	nc := s.js.Conn()
	limit := int(nc.MaxPayload())
	for k, ids := range b.slots {
		// A server with a small max_payload takes the slot's ids in
		// several keys (each id whole).
		for len(ids) > 0 {
			part := ids
			if len(part) > limit {
				if i := bytes.LastIndexByte(part[:limit+1], '\n'); i > 0 {
					part = part[:i]
				}
			}
			ids = bytes.TrimPrefix(ids[len(part):], []byte{'\n'})
			if err := nc.Publish(s.prefix+k+"."+nuid.Next(), part); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("published-events record: %w", err)
	}
	return nil
}

// slotCacheTTL is how long a slot read for a lookup is used again. Safe
// while it is shorter than the duplicate window (at least 10m): an event
// stored after the read is still caught by the window when published
// again.
const slotCacheTTL = time.Minute

// slotCacheMax bounds the slots a cache keeps.
const slotCacheMax = 64

// slotCache keeps the ids of the slots read lately, for the lookups of one
// catch-up (its events of a room fall in few slots). One goroutine uses it
// (the publisher's run).
type slotCache struct {
	slots map[string]cachedSlot
}

type cachedSlot struct {
	ids  map[string]struct{}
	read time.Time
}

// ids returns the ids recorded under slot, read from s unless read less
// than slotCacheTTL before now.
func (c *slotCache) ids(ctx context.Context, s *publishedStore, slot string, now time.Time) (map[string]struct{}, error) {
	if e, ok := c.slots[slot]; ok && now.Sub(e.read) < slotCacheTTL {
		return e.ids, nil
	}
	ids, err := s.readSlot(ctx, slot)
	if err != nil {
		return nil, err
	}
	if c.slots == nil {
		c.slots = map[string]cachedSlot{}
	}
	if len(c.slots) >= slotCacheMax {
		for k, e := range c.slots {
			if now.Sub(e.read) >= slotCacheTTL || len(c.slots) >= slotCacheMax {
				delete(c.slots, k)
			}
		}
	}
	c.slots[slot] = cachedSlot{ids: ids, read: now}
	return ids, nil
}

// readSlot reads the ids of every batch recorded under slot, through an
// ephemeral pull consumer (no flow control to answer: the bridge's
// documented permissions cover it, see docs/security.md).
func (s *publishedStore) readSlot(ctx context.Context, slot string) (_ map[string]struct{}, err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("published-events lookup: %w", err)
		}
	}()
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(5 * time.Second)
	}
	cons, err := s.js.CreateConsumer(ctx, s.stream, jetstream.ConsumerConfig{
		FilterSubject: s.prefix + slot + ".*",
		DeliverPolicy: jetstream.DeliverLastPerSubjectPolicy,
		AckPolicy:     jetstream.AckNonePolicy,
		MemoryStorage: true,
		// Deleted below; the threshold only cleans up after a crash.
		InactiveThreshold: time.Minute,
	})
	if err != nil {
		return nil, err
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = s.js.DeleteConsumer(dctx, s.stream, cons.CachedInfo().Name)
	}()
	ids := map[string]struct{}{}
	// On a cluster the consumer may not take pull requests yet when its
	// creation returns: the first ones get no responders. Pulled again.
	pause := 5 * time.Millisecond
	for left := cons.CachedInfo().NumPending; left > 0; {
		wait := time.Until(deadline)
		if wait < 10*time.Millisecond {
			return nil, context.DeadlineExceeded
		}
		batch, err := cons.Fetch(int(min(left, 256)), jetstream.FetchMaxWait(wait))
		if err != nil {
			return nil, err
		}
		n := 0
		for msg := range batch.Messages() {
			n++
			md, err := msg.Metadata()
			if err != nil {
				return nil, err
			}
			left = md.NumPending
			if msg.Headers().Get("KV-Operation") != "" { // deleted or purged
				continue
			}
			for id := range strings.SplitSeq(string(msg.Data()), "\n") {
				ids[id] = struct{}{}
			}
		}
		if err := batch.Error(); err != nil {
			if n == 0 && errors.Is(err, nats.ErrNoResponders) && time.Until(deadline) > pause {
				t := time.NewTimer(pause)
				select {
				case <-t.C:
				case <-ctx.Done():
					t.Stop()
					return nil, ctx.Err()
				}
				pause = min(2*pause, 100*time.Millisecond)
				continue
			}
			return nil, err
		}
		if n == 0 {
			return nil, errors.New("no batch came")
		}
	}
	return ids, nil
}
