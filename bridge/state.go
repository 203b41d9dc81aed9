package bridge

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/subjects"
)

// StateBucket is the KV bucket under prefix where connectors keep their
// small state (tokens, cursors, open sessions): "<PREFIX>_STATE". Each
// connection's keys are "<conn>.<key>", so a connector sees only its own.
// History 1: a key holds its latest value; revisions make concurrent
// updates safe across replicas.
func StateBucket(prefix string) string { return subjects.StreamName(prefix, "STATE") }

func openStateBucket(ctx context.Context, js jetstream.JetStream, prefix string, replicas int) (jetstream.KeyValue, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: StateBucket(prefix), Description: "bridge: connectors' state, by connection",
		History: 1, Storage: jetstream.FileStorage, Replicas: replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("state bucket: %w", err)
	}
	return kv, nil
}

// stateStore is one connection's view of the state bucket: a
// connector.StateStore whose keys are prefixed with the connection's name.
type stateStore struct {
	kv jetstream.KeyValue
	ns string // "<conn>."
	// fence, when set, refuses writes once this process may no longer act
	// for the connection (its lease passed or may have passed to another):
	// a stale holder never overwrites the state its successor resumes from.
	fence func() error
}

var _ connector.StateStore = (*stateStore)(nil)

func newStateStore(kv jetstream.KeyValue, conn string, fence func() error) *stateStore {
	return &stateStore{kv: kv, ns: conn + ".", fence: fence}
}

// writable checks key and the fence before a write.
func (s *stateStore) writable(op, key string) error {
	if err := checkStateKey(key); err != nil {
		return err
	}
	if s.fence != nil {
		if err := s.fence(); err != nil {
			return fmt.Errorf("state %s %s: %w", op, key, err)
		}
	}
	return nil
}

// checkStateKey says what is wrong with a connector's key: the characters
// a KV key allows, dot-separated tokens, none empty.
func checkStateKey(key string) error {
	if key == "" {
		return errors.New("state: key is empty")
	}
	if len(key) > 256 {
		return fmt.Errorf("state: key %.20q… is longer than 256 bytes", key)
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-/_=.", c) >= 0) {
			return fmt.Errorf("state: key %q has %q; keys use letters, digits and - / _ = . only", key, c)
		}
	}
	if key[0] == '.' || key[len(key)-1] == '.' || strings.Contains(key, "..") {
		return fmt.Errorf("state: key %q has an empty dot-separated part", key)
	}
	return nil
}

// stateErr maps JetStream's KV errors onto the connector's.
func stateErr(op, key string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, jetstream.ErrKeyDeleted):
		return fmt.Errorf("state %s %s: %w", op, key, connector.ErrStateNotFound)
	case errors.Is(err, jetstream.ErrKeyRevisionMismatch), errors.Is(err, jetstream.ErrKeyExists):
		return fmt.Errorf("state %s %s: %w", op, key, connector.ErrStateConflict)
	}
	return fmt.Errorf("state %s %s: %w", op, key, err)
}

func (s *stateStore) Get(ctx context.Context, key string) ([]byte, uint64, error) {
	if err := checkStateKey(key); err != nil {
		return nil, 0, err
	}
	e, err := s.kv.Get(ctx, s.ns+key)
	if err != nil {
		return nil, 0, stateErr("get", key, err)
	}
	return e.Value(), e.Revision(), nil
}

func (s *stateStore) Create(ctx context.Context, key string, value []byte) (uint64, error) {
	if err := s.writable("create", key); err != nil {
		return 0, err
	}
	rev, err := s.kv.Create(ctx, s.ns+key, value)
	return rev, stateErr("create", key, err)
}

func (s *stateStore) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	if err := s.writable("update", key); err != nil {
		return 0, err
	}
	n, err := s.kv.Update(ctx, s.ns+key, value, rev)
	return n, stateErr("update", key, err)
}

func (s *stateStore) Put(ctx context.Context, key string, value []byte) (uint64, error) {
	if err := s.writable("put", key); err != nil {
		return 0, err
	}
	rev, err := s.kv.Put(ctx, s.ns+key, value)
	return rev, stateErr("put", key, err)
}

func (s *stateStore) Delete(ctx context.Context, key string, rev uint64) error {
	if err := s.writable("delete", key); err != nil {
		return err
	}
	var opts []jetstream.KVDeleteOpt
	if rev != 0 {
		opts = append(opts, jetstream.LastRevision(rev))
	}
	return stateErr("delete", key, s.kv.Delete(ctx, s.ns+key, opts...))
}

func (s *stateStore) List(ctx context.Context, prefix string) ([]string, error) {
	kl, err := s.kv.ListKeysFiltered(ctx, s.ns+">")
	if err != nil {
		return nil, stateErr("list", prefix, err)
	}
	defer func() { _ = kl.Stop() }()
	var out []string
	for k := range kl.Keys() {
		if k, ok := strings.CutPrefix(k, s.ns); ok && strings.HasPrefix(k, prefix) {
			out = append(out, k)
		}
	}
	return out, nil
}

// commandCursor keeps where a connection's command consumer stood when it
// was released while idle (consume.Release): the key "Commands.<conn>" of
// the state bucket, holding the stream sequence and the creation time of
// the commands stream it counts in. Connection names have no capital
// letter, so no connector's keys ("<conn>.<key>") can meet it. Saves are
// fenced like the connectors' writes: a process that may no longer hold
// the connection keeps its consumer rather than move the cursor.
//
// A cursor of another commands stream (deleted and made again, its
// sequences starting over) counts as none: after it, the new stream's
// commands would never be found.
type commandCursor struct {
	kv     jetstream.KeyValue
	key    string
	stream int64 // the commands stream's creation time, Unix nanoseconds
	fence  func() error
	log    *zerolog.Logger
}

func newCommandCursor(kv jetstream.KeyValue, conn string, stream time.Time, fence func() error, log *zerolog.Logger) commandCursor {
	return commandCursor{kv: kv, key: "Commands." + conn, stream: stream.UnixNano(), fence: fence, log: log}
}

func (c commandCursor) Load(ctx context.Context) (uint64, bool, error) {
	e, err := c.kv.Get(ctx, c.key)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("state get %s: %w", c.key, err)
	}
	seqText, streamText, _ := strings.Cut(string(e.Value()), " ")
	seq, err := strconv.ParseUint(seqText, 10, 64)
	stream, serr := strconv.ParseInt(streamText, 10, 64)
	if err != nil || serr != nil {
		return 0, false, fmt.Errorf("state key %s holds %.40q, not \"<stream sequence> <stream creation>\"", c.key, e.Value())
	}
	if stream != c.stream {
		c.log.Warn().Str("key", c.key).Uint64("cursor", seq).
			Msg("command cursor of an earlier commands stream (it was made again); starting from the new stream's first command")
		return 0, false, nil
	}
	return seq, true, nil
}

func (c commandCursor) Save(ctx context.Context, seq uint64) error {
	if c.fence != nil {
		if err := c.fence(); err != nil {
			return err
		}
	}
	v := strconv.AppendInt(append(strconv.AppendUint(nil, seq, 10), ' '), c.stream, 10)
	if _, err := c.kv.Put(ctx, c.key, v); err != nil {
		return fmt.Errorf("state put %s: %w", c.key, err)
	}
	return nil
}
