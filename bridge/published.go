package bridge

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bridgeworks/bridge/subjects"
)

// PublishedBucket is the KV bucket of the events stored in BRIDGE_EVENTS
// under prefix: one key per event id, kept as long as the stream keeps
// events (nats.events_max_age).
//
// JetStream's duplicate window (nats.duplicate_window) and a connector's
// memory of what it published stop a repeated event only for so long, and
// not across a restart. Catch-up after a (re)connect finds again every
// platform message nobody marked processed, however old: before publishing
// such an event (connector.Event.GapFill) the publisher asks this bucket,
// and an event already stored is acknowledged without being stored again.
// Live events are not looked up (the window covers a push repeated by the
// platform); every stored event is recorded without waiting for the write.
func PublishedBucket(prefix string) string { return subjects.StreamName(prefix, "PUBLISHED") }

// publishedStore is the bucket of PublishedBucket; nil records nothing and
// finds nothing.
type publishedStore struct {
	js     jetstream.JetStream
	kv     jetstream.KeyValue
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
	return &publishedStore{js: js, kv: kv, prefix: "$KV." + name + "."}, nil
}

// publishedKey is the KV key of event id (ids hold characters keys may not).
func publishedKey(id string) string { return string(appendPublishedKey(nil, id)) }

// appendPublishedKey appends the KV key of event id to b.
func appendPublishedKey(b []byte, id string) []byte {
	h := sha256.Sum256([]byte(id))
	return hex.AppendEncode(b, h[:])
}

// has reports whether event id was stored.
func (s *publishedStore) has(ctx context.Context, id string) (bool, error) {
	if s == nil {
		return false, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := s.kv.Get(ctx, publishedKey(id))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return false, nil
	}
	return false, fmt.Errorf("published-events lookup: %w", err)
}

// record notes that event id is stored, without waiting for the write: a
// lost one only lets a later catch-up publish the event again, and the
// stream's duplicate window still catches that for a while.
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
