package bridge

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startCluster starts three JetStream servers clustered over routes.
func startCluster(t *testing.T) string {
	var routes []*url.URL
	var rports []int
	for range 3 {
		p := freePort(t)
		rports = append(rports, p)
		u, _ := url.Parse(fmt.Sprintf("nats-route://127.0.0.1:%d", p))
		routes = append(routes, u)
	}
	var urls string
	for i := range 3 {
		o := &server.Options{ServerName: "n" + strconv.Itoa(i), Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(),
			Cluster: server.ClusterOpts{Name: "rv", Host: "127.0.0.1", Port: rports[i]}, Routes: routes, NoLog: true, NoSigs: true}
		s, err := server.NewServer(o)
		if err != nil {
			t.Fatal(err)
		}
		go s.Start()
		t.Cleanup(s.Shutdown)
		if !s.ReadyForConnections(10 * time.Second) {
			t.Fatal("server not ready")
		}
		if urls != "" {
			urls += ","
		}
		urls += s.ClientURL()
	}
	return urls
}

// TestSlotLookupOnCluster: a stored event's id, recorded in its slot, is looked up by catch-up on a
// three-server cluster (the bucket at 3 replicas, as nats.replicas = 3
// makes it). The lookup must find it every time: a lookup that fails makes
// the publisher store the event again, and beyond the duplicate window
// nothing else stops the second copy. On a cluster the first pull of the
// freshly made ephemeral consumer often gets "no responders".
func TestSlotLookupOnCluster(t *testing.T) {
	t.Parallel()
	for _, r := range []int{3, 1} {
		t.Run("replicas "+strconv.Itoa(r), func(t *testing.T) { slotLookupOnCluster(t, r) })
	}
}

func slotLookupOnCluster(t *testing.T, replicas int) {
	urls := startCluster(t)
	nc, err := nats.Connect(urls)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var st *publishedStore
	for deadline := time.Now().Add(30 * time.Second); ; {
		actx, acancel := context.WithTimeout(ctx, 3*time.Second)
		st, err = openPublished(actx, js, "bridge", time.Hour, replicas)
		acancel()
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond) // the meta leader is being elected
	}
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	// The records are plain publishes: on a cluster still settling one can
	// be dropped (the bridge accepts that: a duplicate after the window),
	// so each is written again until the bucket's stream holds it.
	stored := func(n uint64, write func()) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); ; {
			write()
			_ = nc.Flush()
			for wait := time.Now().Add(2 * time.Second); time.Now().Before(wait); time.Sleep(20 * time.Millisecond) {
				if s, err := js.Stream(ctx, st.stream); err == nil {
					if info, err := s.Info(ctx); err == nil && info.State.Msgs >= n {
						return
					}
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("the bucket's stream never held %d records", n)
			}
		}
	}
	stored(1, func() {
		var b publishedBatch
		b.add("c1", "r", at, "band:c1:m1")
		if err := st.flush(&b); err != nil {
			t.Logf("flush: %v", err)
		}
	})
	failed := 0
	var last error
	const lookups = 200
	for range lookups {
		var cache slotCache // a fresh catch-up: nothing cached
		found, err := st.has(ctx, &cache, "c1", "r", at, "band:c1:m1")
		if !found {
			failed++
			last = err
		}
	}
	// Control: the per-id key (events without a time, earlier versions).
	stored(2, func() { _ = st.record("band:c1:m2") })
	perID := 0
	for range lookups {
		if found, _ := st.has(ctx, &slotCache{}, "c1", "r", time.Time{}, "band:c1:m2"); !found {
			perID++
		}
	}
	t.Logf("per-id key lookups missed: %d of %d", perID, lookups)
	if failed > 0 {
		t.Fatalf("%d of %d lookups of a recorded id did not find it (the event would be stored again); last error: %v", failed, lookups, last)
	}
}
