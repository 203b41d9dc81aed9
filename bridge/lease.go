package bridge

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bridgeworks/bridge/subjects"
)

// errLeaseLost ends a connection's run when another replica took its lease.
var errLeaseLost = errors.New("lease lost")

// leases keep two bridge replicas from holding the same platform
// connection: a connection runs only on the replica holding its key in a
// JetStream KV bucket whose keys expire TTL after their last renewal.
type leases struct {
	kv    jetstream.KeyValue
	owner string
	ttl   time.Duration
}

// LeaseBucket is the KV bucket of connection leases under prefix.
func LeaseBucket(prefix string) string { return subjects.StreamName(prefix, "LEASES") }

func openLeases(ctx context.Context, js jetstream.JetStream, prefix, owner string, ttl time.Duration, replicas int) (*leases, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: LeaseBucket(prefix), Description: "bridge: which replica holds each connection",
		TTL: ttl, History: 1, Storage: jetstream.FileStorage, Replicas: replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("lease bucket: %w", err)
	}
	return &leases{kv: kv, owner: owner, ttl: ttl}, nil
}

// lease is one connection's lease, held or wanted.
type lease struct {
	l   *leases
	key string
	rev uint64
}

func (l *leases) lease(conn string) *lease { return &lease{l: l, key: conn} }

// acquire waits until this replica holds the lease. A key still held by
// this owner (a restart of the same replica) is taken over at once; another
// owner's key is waited out until it expires.
func (ls *lease) acquire(ctx context.Context, waiting func(holder string)) error {
	poll := max(ls.l.ttl/5, 50*time.Millisecond)
	told := ""
	for {
		rev, err := ls.l.kv.Create(ctx, ls.key, []byte(ls.l.owner))
		if err == nil {
			ls.rev = rev
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			if ctx.Err() != nil {
				return ctx.Err()
			}
		} else if e, gerr := ls.l.kv.Get(ctx, ls.key); gerr == nil {
			holder := string(e.Value())
			if holder == ls.l.owner {
				if rev, uerr := ls.l.kv.Update(ctx, ls.key, []byte(ls.l.owner), e.Revision()); uerr == nil {
					ls.rev = rev
					return nil
				}
			} else if holder != told {
				told = holder
				waiting(holder)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(poll):
		}
	}
}

// hold renews the lease every TTL/3 until ctx ends (nil) or the lease is
// lost (errLeaseLost). A renewal that fails for a transient reason is
// retried until the lease would have expired.
func (ls *lease) hold(ctx context.Context) error {
	every := max(ls.l.ttl/3, 10*time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, every)
		rev, err := ls.l.kv.Update(rctx, ls.key, []byte(ls.l.owner), ls.rev)
		cancel()
		switch {
		case err == nil:
			ls.rev, last = rev, time.Now()
		case ctx.Err() != nil:
			return nil
		case isWrongRevision(err):
			// An update whose answer was lost (NATS restarting) moved the
			// revision: still ours if the key still names this owner.
			if e, gerr := ls.l.kv.Get(ctx, ls.key); gerr == nil && string(e.Value()) == ls.l.owner {
				ls.rev, last = e.Revision(), time.Now()
				continue
			}
			return fmt.Errorf("%w: %v", errLeaseLost, err)
		case time.Since(last) >= ls.l.ttl-every:
			// Give up before the key can expire, so two replicas never both
			// believe they hold it.
			return fmt.Errorf("%w: %v", errLeaseLost, err)
		}
	}
}

func isWrongRevision(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == 10164) ||
		errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted)
}

// release gives the lease up so another replica can take it at once.
func (ls *lease) release(ctx context.Context) {
	if ls.rev == 0 {
		return
	}
	_ = ls.l.kv.Delete(ctx, ls.key, jetstream.LastRevision(ls.rev))
	ls.rev = 0
}
