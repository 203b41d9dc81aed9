//go:build chaos

package chaos

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bridgeworks/bridge/internal/testutil"
)

// natsCluster is three nats-server processes forming one cluster (routes on
// loopback ports), JetStream on each with a store of its own, kept across
// restarts.
type natsCluster struct {
	t     *testing.T
	bin   string
	confs []string
	logs  []string
	ports []int
	procs []*proc
}

func startNATSCluster(t *testing.T, dir, bin string) *natsCluster {
	t.Helper()
	const n = 3
	c := &natsCluster{t: t, bin: bin}
	t.Cleanup(c.stop) // also when the cluster never got ready: no server outlives the test
	var routePorts []int
	for range n {
		c.ports = append(c.ports, freePort(t))
		routePorts = append(routePorts, freePort(t))
	}
	var routes []string
	for _, p := range routePorts {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
	}
	for i := range n {
		conf := fmt.Sprintf(`server_name: n%d
listen: "127.0.0.1:%d"
jetstream { store_dir: %q }
cluster {
  name: chaos
  listen: "127.0.0.1:%d"
  routes: [%s]
}
`, i, c.ports[i], filepath.Join(dir, fmt.Sprintf("js-%d", i)), routePorts[i], strings.Join(routes, ", "))
		path := filepath.Join(dir, fmt.Sprintf("nats-%d.conf", i))
		if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		c.confs = append(c.confs, path)
		c.logs = append(c.logs, filepath.Join(dir, fmt.Sprintf("nats-%d.log", i)))
		c.procs = append(c.procs, nil)
		c.start(i)
	}
	// Ready once JetStream has a meta leader: the account info answers.
	ctx := testutil.Context(t, 60*time.Second)
	nc, err := nats.Connect(c.urls(), nats.MaxReconnects(-1), nats.RetryOnFailedConnect(true))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := js.AccountInfo(ctx); err == nil {
			return c
		} else if ctx.Err() != nil {
			t.Fatalf("NATS cluster not ready: %v\n%s", err, tail(c.logs[0], 20))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (c *natsCluster) start(i int) {
	c.procs[i] = start(c.t, fmt.Sprintf("nats-%d", i), c.logs[i], nil, c.bin, "-c", c.confs[i])
}

// urls is every server's client URL, comma-separated.
func (c *natsCluster) urls() string {
	var us []string
	for _, p := range c.ports {
		us = append(us, fmt.Sprintf("nats://127.0.0.1:%d", p))
	}
	return strings.Join(us, ",")
}

func (c *natsCluster) stop() {
	for _, p := range c.procs {
		if p != nil {
			p.stop(c.t)
		}
	}
}
