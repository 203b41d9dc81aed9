package cmdexec

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bridgeworks/bridge/subjects"
)

// The executed-ids store: a KV bucket shared by every connection under the
// prefix, one key per (connection, command id), the value the Result. Keys
// are hashes because ids come from workers and KV keys are restricted.

// bucket returns the KV bucket, creating or updating it on first use.
func (e *Executor) bucket(ctx context.Context) (_ jetstream.KeyValue, err error) {
	e.kvMu.Lock()
	defer e.kvMu.Unlock()
	if e.kv != nil {
		return e.kv, nil
	}
	name := BucketName(e.o.Prefix)
	defer wrapErr(&err, "kv %s", name)
	kv, err := e.o.JS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      name,
		Description: "bridge: executed command ids and their results",
		History:     1,
		TTL:         e.o.ExecutedTTL,
		Storage:     jetstream.FileStorage,
		Replicas:    e.o.Replicas,
	})
	if err != nil {
		return nil, err
	}
	e.kv = kv
	return kv, nil
}

// idKey is the KV key of command id on conn.
func idKey(conn, id string) string {
	h := sha256.Sum256([]byte(conn + "\x00" + id))
	return hex.EncodeToString(h[:])
}

// lookup returns the stored result of id, and whether there is one.
func (e *Executor) lookup(ctx context.Context, id string) (_ subjects.Result, _ bool, err error) {
	defer wrapErr(&err, "executed-id lookup")
	kv, err := e.bucket(ctx)
	if err != nil {
		return subjects.Result{}, false, err
	}
	ent, err := kv.Get(ctx, idKey(e.o.Conn, id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return subjects.Result{}, false, nil
	}
	if err != nil {
		return subjects.Result{}, false, err
	}
	var res subjects.Result
	if err := json.Unmarshal(ent.Value(), &res); err != nil {
		return subjects.Result{}, false, fmt.Errorf("stored result: %w", err)
	}
	return res, true, nil
}

// remember stores the result of id.
func (e *Executor) remember(ctx context.Context, id string, res subjects.Result, wait bool) (err error) {
	defer wrapErr(&err, "executed-id store")
	kv, err := e.bucket(ctx)
	if err != nil {
		return err
	}
	b, err := json.Marshal(res)
	if err != nil {
		return err
	}
	if wait {
		_, err = kv.Put(ctx, idKey(e.o.Conn, id), b)
		return err
	}
	// Durable commands publish the record without waiting for its PubAck:
	// it only matters if the command's message comes back, which needs the
	// bridge to die before acking it, and then it is reconciled like any
	// crash in that window. Waiting would put a store round trip into every
	// room's critical path.
	_, err = e.o.JS.PublishAsync("$KV."+BucketName(e.o.Prefix)+"."+idKey(e.o.Conn, id), b)
	return err
}
