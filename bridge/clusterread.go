package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/nats-io/nats.go/jetstream"
)

// ReadCluster reads, from the members and lease buckets under prefix, the
// running bridge processes and every connection's lease, with the process
// each of conns is assigned to (the enabled connections of the config).
// It is what `bridge status` prints; /status shows the same from the
// process's own view.
func ReadCluster(ctx context.Context, js jetstream.JetStream, prefix string, conns []string) ([]ClusterMember, []ClusterLease, error) {
	var members []ClusterMember
	mkv, err := js.KeyValue(ctx, MembersBucket(prefix))
	if err != nil {
		return nil, nil, fmt.Errorf("members bucket %s: %w (no bridge of this prefix has run)", MembersBucket(prefix), err)
	}
	ids, err := keys(ctx, mkv)
	if err != nil {
		return nil, nil, fmt.Errorf("members bucket: %w", err)
	}
	for _, id := range ids {
		e, err := mkv.Get(ctx, id)
		if err != nil {
			continue // left meanwhile
		}
		var m member
		if json.Unmarshal(e.Value(), &m) == nil {
			members = append(members, ClusterMember{Owner: m.Owner, Instance: id, Since: m.Since})
		}
	}
	lkv, err := js.KeyValue(ctx, LeaseBucket(prefix))
	if err != nil {
		return nil, nil, fmt.Errorf("lease bucket: %w", err)
	}
	held, err := keys(ctx, lkv)
	if err != nil {
		return nil, nil, fmt.Errorf("lease bucket: %w", err)
	}
	names := slices.Clone(conns)
	for _, k := range held {
		if !slices.Contains(names, k) {
			names = append(names, k)
		}
	}
	slices.Sort(names)
	instances := make([]string, 0, len(members))
	for _, m := range members {
		instances = append(instances, m.Instance)
	}
	a := assign(conns, instances)
	var leases []ClusterLease
	for _, n := range names {
		cl := ClusterLease{Connection: n, Assigned: a[n]}
		if e, err := lkv.Get(ctx, n); err == nil {
			v := parseLeaseValue(e.Value())
			cl.Holder, cl.Since, cl.Revision, cl.Renewed = v.holder.String(), v.Since, e.Revision(), e.Created().UTC()
			for i := range members {
				if members[i].Instance == v.Instance {
					members[i].Holds++
				}
			}
		}
		leases = append(leases, cl)
	}
	return members, leases, nil
}

func keys(ctx context.Context, kv jetstream.KeyValue) ([]string, error) {
	ks, err := kv.Keys(ctx)
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil, nil
	}
	return ks, err
}
