package cmdexec

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/subjects"
)

// The executed-ids store: a KV bucket shared by every connection under the
// prefix, one key per (connection, command id), the value the Result. Keys
// are hashes because ids come from workers and KV keys are restricted.
//
// The same bucket holds claims: "r.<hash of connection and platform ref>",
// the value the id of the command whose execution created that platform
// record (connector.Response.Ref). A reconciled command claims the record it
// is taken for, so one record never stands for two commands.

// OpenExecuted creates or updates the executed-ids bucket of prefix. A
// process with many connections opens it once and gives it to every
// executor (Options.Executed): each create or update makes the server check
// the bucket's subjects against every stream's.
func OpenExecuted(ctx context.Context, js jetstream.JetStream, prefix string, ttl time.Duration, replicas int) (_ jetstream.KeyValue, err error) {
	name := BucketName(prefix)
	defer wrapErr(&err, "kv %s", name)
	return js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      name,
		Description: "bridge: executed command ids and their results",
		History:     1,
		TTL:         ttl,
		Storage:     jetstream.FileStorage,
		Replicas:    max(replicas, 1),
	})
}

// bucket returns the KV bucket: Options.Executed, or else opened on first use.
func (e *Executor) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	e.kvMu.Lock()
	defer e.kvMu.Unlock()
	if e.kv != nil {
		return e.kv, nil
	}
	if e.o.Executed != nil {
		e.kv = e.o.Executed
		return e.kv, nil
	}
	kv, err := OpenExecuted(ctx, e.o.JS, e.o.Prefix, e.o.ExecutedTTL, e.o.Replicas)
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
	ent, err := kv.Get(ctx, idKey(e.conn.Name, id))
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

// refKey is the KV key of the claim on platform record ref of conn.
func refKey(conn, ref string) string {
	h := sha256.Sum256([]byte(conn + "\x00" + ref))
	return "r." + hex.EncodeToString(h[:])
}

// remember stores the result of id and, when ref is set, id's claim on the
// platform record its execution created, waiting for both writes (Do).
func (e *Executor) remember(ctx context.Context, id, ref string, res subjects.Result) (err error) {
	defer wrapErr(&err, "executed-id store")
	kv, err := e.bucket(ctx)
	if err != nil {
		return err
	}
	b, err := json.Marshal(res)
	if err != nil {
		return err
	}
	if ref != "" {
		if _, err = kv.Put(ctx, refKey(e.conn.Name, ref), []byte(id)); err != nil {
			return err
		}
	}
	_, err = kv.Put(ctx, idKey(e.conn.Name, id), b)
	return err
}

// record writes the result of a durable command (encoded, as published)
// and, when ref is set, its claim, without waiting: plain publishes on the
// connection that acks the command, asking for no PubAck. Nothing would
// read one: the record only matters if the command's message comes back,
// which needs the bridge to die before acking it, and then it is
// reconciled like any crash in that window. Waiting would put a store
// round trip into every room's critical path, and a PubAck per record
// costs the server a message and this client a dispatch. The claim goes
// first and both go before the ack, so a command acked has them stored
// (one connection keeps the order of its publishes).
// The bucket exists (consume.Options.Setup made it); if not, it is made
// under hard, even past the drain deadline: the command did run.
func (e *Executor) record(hard context.Context, id, ref string, res []byte) (err error) {
	defer wrapErr(&err, "executed-id store")
	e.kvMu.Lock()
	open := e.kv != nil
	e.kvMu.Unlock()
	if !open {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(hard), opTimeout)
		_, err := e.bucket(ctx)
		cancel()
		if err != nil {
			return err
		}
	}
	nc := e.o.JS.Conn()
	if ref != "" {
		if err := nc.Publish(e.kvSubject(refKey(e.conn.Name, ref)), []byte(id)); err != nil {
			return err
		}
	}
	return nc.Publish(e.kvSubject(idKey(e.conn.Name, id)), res)
}

// kvSubject is the subject a write of key to the bucket is published on.
func (e *Executor) kvSubject(key string) string {
	return "$KV." + e.f.bucketName + "." + key
}

// reconcile asks the connector for records that could be an earlier
// execution of cmd and takes the first one no other command has claimed,
// claiming it for cmd (found). A record without a Ref cannot be told apart
// from another command's, so it proves nothing: with none left, cmd is to
// be executed. A command is never reported done on a record that another
// command's execution created.
func (e *Executor) reconcile(ctx context.Context, rc connector.Reconciler, cmd connector.Command) (_ connector.Response, _ bool, err error) {
	defer wrapErr(&err, "reconcile")
	if cmd.Since.IsZero() {
		// An RPC retry: an earlier request older than the store's memory
		// would not be recognised by its id either.
		cmd.Since = time.Now().Add(-e.o.ExecutedTTL)
	}
	recs, err := rc.Reconcile(ctx, cmd)
	if err != nil || len(recs) == 0 {
		return connector.Response{}, false, err
	}
	kv, err := e.bucket(ctx)
	if err != nil {
		return connector.Response{}, false, err
	}
	for _, r := range recs {
		if r.Ref == "" {
			continue
		}
		key := refKey(e.conn.Name, r.Ref)
		_, err := kv.Create(ctx, key, []byte(cmd.ID))
		if err == nil {
			return r, true, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return connector.Response{}, false, err
		}
		ent, err := kv.Get(ctx, key)
		if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return connector.Response{}, false, err
		}
		if err == nil && string(ent.Value()) == cmd.ID {
			return r, true, nil // claimed by this command before (an earlier reconcile)
		}
	}
	return connector.Response{}, false, nil
}

// Executed reports whether command cmd.ID was executed already: a
// successful result of it is stored, or, when cmd.MaybeExecuted says a crashed run may have executed
// it after all, the platform shows it did ([connector.Reconciler]; the
// record found is claimed for cmd and its result stored, so the next look
// needs no platform call). Nothing is executed.
func (e *Executor) Executed(ctx context.Context, cmd connector.Command) (bool, error) {
	if cmd.ID == "" {
		return false, errors.New("executed check: the command has no id")
	}
	if res, found, err := e.lookup(ctx, cmd.ID); err != nil || (found && res.OK) {
		return err == nil, err
	}
	rc, ok := e.exec.(connector.Reconciler)
	if !ok || !cmd.MaybeExecuted {
		return false, nil
	}
	resp, found, err := e.reconcile(ctx, rc, cmd)
	if err != nil || !found {
		return false, err
	}
	if err := e.remember(ctx, cmd.ID, "", okResult(cmd, resp, 0)); err != nil {
		e.log.Warn().Err(err).Str("command", cmd.Name).Msg("executed id not stored")
	}
	return true, nil
}
