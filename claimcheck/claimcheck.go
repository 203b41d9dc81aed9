package claimcheck

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bridgeworks/bridge/subjects"
)

// ErrMismatch means an object is not what its reference says (size or
// SHA-256): it was replaced or damaged.
var ErrMismatch = errors.New("object does not match its reference")

// Options configure a [Store]. JS and Conn are required.
type Options struct {
	JS       jetstream.JetStream
	Prefix   string        // subject prefix, default "bridge"
	Conn     string        // the connection whose payloads the bucket holds
	MaxAge   time.Duration // how long an object is kept, default 168h (the events stream's default max age)
	Replicas int           // default 1
}

// Store puts the payloads of one connection into its bucket. It is safe for
// concurrent use; the bucket is created or updated on first use.
type Store struct {
	o  Options
	mu sync.Mutex
	ob jetstream.ObjectStore
}

// New returns the store of o.Conn's payloads; it does no I/O.
func New(o Options) *Store {
	if o.Prefix == "" {
		o.Prefix = subjects.DefaultPrefix
	}
	if o.MaxAge <= 0 {
		o.MaxAge = 168 * time.Hour
	}
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	return &Store{o: o}
}

// Bucket is the name of the store's bucket.
func (s *Store) Bucket() string { return subjects.PayloadBucket(s.o.Prefix, s.o.Conn) }

// Limit is the largest message the connection may publish (the server's
// max_payload), in bytes.
func (s *Store) Limit() int64 { return s.o.JS.Conn().MaxPayload() }

// Fits reports whether m can be published on the store's connection.
func (s *Store) Fits(m *nats.Msg) bool { return Fits(s.o.JS.Conn(), m) }

// Put stores data and returns its reference. Storing bytes already there
// (the object is named by their SHA-256) writes nothing.
func (s *Store) Put(ctx context.Context, data []byte) (ref subjects.DataRef, err error) {
	sum := sha256.Sum256(data)
	ref = subjects.DataRef{Bucket: s.Bucket(), Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:])}
	ref.Object = ref.SHA256
	defer wrapErr(&err, "claimcheck: put %d bytes into %s", len(data), ref.Bucket)
	ob, err := s.bucket(ctx)
	if err != nil {
		return ref, err
	}
	if info, err := ob.GetInfo(ctx, ref.Object); err == nil && info.Size == uint64(len(data)) {
		return ref, nil
	} else if err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
		s.forget()
		return ref, err
	}
	chunk := uint32(min(128<<10, s.Limit()-1024))
	if s.Limit() < 4096 {
		chunk = uint32(s.Limit() / 2)
	}
	_, err = ob.Put(ctx, jetstream.ObjectMeta{Name: ref.Object, Opts: &jetstream.ObjectMetaOptions{ChunkSize: chunk}}, bytes.NewReader(data))
	if err != nil {
		s.forget()
	}
	return ref, err
}

// bucket returns the object store, creating or updating it on first use.
func (s *Store) bucket(ctx context.Context) (jetstream.ObjectStore, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ob != nil {
		return s.ob, nil
	}
	ob, err := s.o.JS.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket:      s.Bucket(),
		Description: "bridge: payloads of connection " + s.o.Conn + " too large for one NATS message",
		TTL:         s.o.MaxAge,
		Storage:     jetstream.FileStorage,
		Replicas:    s.o.Replicas,
	})
	if err != nil {
		return nil, err
	}
	s.ob = ob
	return ob, nil
}

// forget drops the cached bucket after an error, so the next Put creates
// it again (an operator may have deleted it).
func (s *Store) forget() {
	s.mu.Lock()
	s.ob = nil
	s.mu.Unlock()
}

// Fetch returns the bytes ref points at, checked against its size and
// SHA-256. It reads the bucket's stream with direct gets only (the object's
// metadata, then its chunks one by one): the rights docs/security.md gives a
// worker on its own connection's bucket. Any JetStream context works.
func Fetch(ctx context.Context, js jetstream.JetStream, ref subjects.DataRef) (_ []byte, err error) {
	defer wrapErr(&err, "claimcheck: fetch %s", ref.URI())
	st, err := js.Stream(ctx, "OBJ_"+ref.Bucket)
	if err != nil {
		return nil, err
	}
	meta, err := st.GetLastMsgForSubject(ctx, "$O."+ref.Bucket+".M."+base64.URLEncoding.EncodeToString([]byte(ref.Object)))
	if err != nil {
		return nil, err
	}
	var info jetstream.ObjectInfo
	if err := json.Unmarshal(meta.Data, &info); err != nil {
		return nil, fmt.Errorf("object metadata: %w", err)
	}
	if info.Deleted || info.NUID == "" {
		return nil, jetstream.ErrObjectNotFound
	}
	if info.Size != uint64(ref.Size) {
		return nil, fmt.Errorf("%w: %d bytes, the reference says %d", ErrMismatch, info.Size, ref.Size)
	}
	chunks := "$O." + ref.Bucket + ".C." + info.NUID
	out := make([]byte, 0, ref.Size)
	seq := uint64(1)
	for range info.Chunks {
		m, err := st.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(chunks))
		if err != nil {
			return nil, fmt.Errorf("chunk after sequence %d: %w", seq, err)
		}
		out = append(out, m.Data...)
		seq = m.Sequence + 1
	}
	sum := sha256.Sum256(out)
	if int64(len(out)) != ref.Size || hex.EncodeToString(sum[:]) != ref.SHA256 {
		return nil, fmt.Errorf("%w: size or sha256 differ", ErrMismatch)
	}
	return out, nil
}

func wrapErr(err *error, format string, args ...any) {
	if *err != nil {
		*err = fmt.Errorf(format+": %w", append(args, *err)...)
	}
}
