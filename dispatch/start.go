package dispatch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bridgeworks/bridge/subjects"
)

// Where a rule starts, and what it finished.
//
// A rule's durable consumer remembers what was dispatched. When the consumer
// is missing, two cases look the same to JetStream and are not:
//
//   - the rule is new: it starts where Options.Start says, recorded in
//     StartBucket the first time the rule is seen, so that a later restart
//     (or a lost consumer) does not move it;
//   - the consumer was lost (deleted, a store restored): the rule starts
//     again from its recorded start, and every event stored until then may
//     have been dispatched already. Those are looked up in DoneBucket, where
//     every event is recorded when it is finished (processed, or failed and
//     dead-lettered), and skipped when found there. A redelivery (NATS
//     counts it) is looked up the same way.
//
// An event not found there goes to the worker again; its reply commands then
// carry MaybeExecuted, so the executed-ids store and reconciliation still
// keep them from running twice.

// StartBucket is the KV bucket of the rules' start points under prefix.
func StartBucket(prefix string) string { return subjects.StreamName(prefix, "DISPATCH_START") }

// DoneBucket is the KV bucket of finished events under prefix.
func DoneBucket(prefix string) string { return subjects.StreamName(prefix, "DISPATCHED") }

// startPoint is where a rule's consumer starts in the events stream: a
// sequence, a time, or (both zero) the stream's beginning.
type startPoint struct {
	Seq  uint64    `json:"seq,omitempty"`
	Time time.Time `json:"time,omitzero"`
}

// parseStart checks Options.Start: "new", "all" or a positive duration.
func parseStart(s string) (time.Duration, error) {
	switch s {
	case "new", "all":
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("start %q is not \"new\", \"all\" or a duration like \"24h\"", s)
	}
	return d, nil
}

// Stores are the buckets every dispatch rule of a prefix shares: where
// rules start and which events they finished.
type Stores struct {
	Starts, Done jetstream.KeyValue
}

// OpenStores creates or updates the dispatch buckets of prefix. A process
// with many rules opens them once and gives them to every rule
// (Options.Stores): each create or update makes the server check the
// buckets' subjects against every stream's.
func OpenStores(ctx context.Context, js jetstream.JetStream, prefix string, doneTTL time.Duration, replicas int) (*Stores, error) {
	replicas = max(replicas, 1)
	starts, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: StartBucket(prefix), Description: "bridge: where each managed-dispatch rule starts",
		History: 1, Storage: jetstream.FileStorage, Replicas: replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("kv %s: %w", StartBucket(prefix), err)
	}
	done, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: DoneBucket(prefix), Description: "bridge: events managed dispatch finished",
		History: 1, TTL: doneTTL, Storage: jetstream.FileStorage, Replicas: replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("kv %s: %w", DoneBucket(prefix), err)
	}
	return &Stores{Starts: starts, Done: done}, nil
}

func (d *Dispatcher) openStores(ctx context.Context) error {
	if d.starts != nil {
		return nil
	}
	st := d.o.Stores
	if st == nil {
		var err error
		if st, err = OpenStores(ctx, d.o.JS, d.o.Prefix, d.o.DoneTTL, d.o.Replicas); err != nil {
			return err
		}
	}
	d.starts, d.done = st.Starts, st.Done
	return nil
}

// configure is the engine's Configure hook: it keeps an existing
// consumer's start, and picks a missing one's from the rule's start point
// (see above). The engine's lookup says which: existing is nil when the
// consumer is about to be created.
func (d *Dispatcher) configure(ctx context.Context, cfg *jetstream.ConsumerConfig, existing *jetstream.ConsumerInfo) error {
	key := d.o.Conn // [a-z0-9_-]: a valid key
	if existing != nil {
		// Where a consumer starts cannot be changed; keep it.
		cfg.DeliverPolicy, cfg.OptStartSeq, cfg.OptStartTime = existing.Config.DeliverPolicy, existing.Config.OptStartSeq, existing.Config.OptStartTime
		if _, err := d.starts.Get(ctx, key); errors.Is(err, jetstream.ErrKeyNotFound) {
			// A rule from before start points were kept: if its consumer is
			// lost, it resumes from what it had finished.
			b, _ := json.Marshal(startPoint{Seq: existing.AckFloor.Stream + 1})
			_, _ = d.starts.Create(ctx, key, b)
		}
		return nil
	}
	st, err := d.o.JS.Stream(ctx, subjects.StreamName(d.o.Prefix, subjects.StreamEvents))
	if err != nil {
		return err
	}
	last := st.CachedInfo().State.LastSeq
	var sp startPoint
	ent, err := d.starts.Get(ctx, key)
	switch {
	case err == nil:
		if err := json.Unmarshal(ent.Value(), &sp); err != nil {
			return fmt.Errorf("start point of %s: %w", key, err)
		}
		d.replayTo.Store(last)
		d.log.Warn().Uint64("up_to_seq", last).Msg("dispatch consumer was missing; events stored until now are checked against the finished ones before dispatch")
	case errors.Is(err, jetstream.ErrKeyNotFound):
		if sp, err = d.firstStart(ctx, st, last); err != nil {
			return err
		}
		b, _ := json.Marshal(sp)
		if _, err := d.starts.Create(ctx, key, b); err != nil {
			return fmt.Errorf("start point of %s: %w", key, err) // a race with another replica: the next try reads its record
		}
		d.log.Info().Str("start", d.o.Start).Uint64("seq", sp.Seq).Time("time", sp.Time).Msg("new dispatch rule; its start point is recorded")
	default:
		return err
	}
	switch {
	case sp.Seq > 0:
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, sp.Seq
	case !sp.Time.IsZero():
		t := sp.Time
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &t
	}
	return nil
}

// firstStart is where a new rule starts. "new": at the first event stored
// after this bridge took the connection (its lease_acquired lifecycle
// event, stored before the connection stores any event), else after the
// stream's last message; "all": the stream's beginning; a duration: that
// long ago.
func (d *Dispatcher) firstStart(ctx context.Context, st jetstream.Stream, last uint64) (startPoint, error) {
	switch d.o.Start {
	case "all":
		return startPoint{}, nil
	case "new":
		subj := d.conn.Subject(subjects.KindSys, "", string(subjects.LifecycleLeaseAcquired)).String()
		m, err := st.GetLastMsgForSubject(ctx, subj)
		switch {
		case err == nil:
			return startPoint{Seq: m.Sequence + 1}, nil
		case errors.Is(err, jetstream.ErrMsgNotFound):
			return startPoint{Seq: last + 1}, nil
		}
		return startPoint{}, err
	}
	back, _ := parseStart(d.o.Start)
	return startPoint{Time: time.Now().Add(-back).UTC()}, nil
}

// doneKey is the KV key of a finished event.
func doneKey(conn, eventID string) string {
	h := sha256.Sum256([]byte(conn + "\x00" + eventID))
	return hex.EncodeToString(h[:])
}

// finishedBefore reports whether an earlier run finished msg. A failed
// lookup answers no: the worker runs again, its commands still deduplicated.
func (d *Dispatcher) finishedBefore(ctx context.Context, msg *message) bool {
	if d.done == nil || msg.eventID == "" {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := d.done.Get(ctx, doneKey(d.o.Conn, msg.eventID))
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		msg.log.Warn().Err(err).Msg("cannot tell whether the event was dispatched before; dispatching it")
	}
	return err == nil
}

// recordDone notes that msg is finished, without waiting: it is written
// before the message is settled, on the same connection, so a message
// settled is recorded. It is a plain publish asking for no PubAck: nothing
// would read one (a lost write only lets a lost consumer dispatch the
// event again), and each would cost the server a message and this client
// a dispatch.
func (d *Dispatcher) recordDone(msg *message, outcome string) {
	if d.done == nil || msg.eventID == "" {
		return
	}
	if err := d.o.JS.Conn().Publish(d.doneSubject+doneKey(d.o.Conn, msg.eventID), []byte(outcome)); err != nil {
		msg.log.Warn().Err(err).Msg("finished event not recorded; a lost consumer would dispatch it again")
	}
}
