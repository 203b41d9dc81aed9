//go:build linux

package natsbus_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bridgeworks/bridge/internal/testutil"
	"github.com/bridgeworks/bridge/natsbus"
)

// smallDisk mounts a 16 MiB tmpfs on a temporary directory, or skips the
// test where that is not allowed (it needs root).
func smallDisk(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=16m"); err != nil {
		t.Skipf("needs a small file system (tmpfs mount, as root): %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

// fillDisk writes a file in dir until the disk is full and returns its path.
func fillDisk(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "other-files")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 256<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			return path
		}
	}
}

// The disk under the store fills up with other files: nats-server's file
// store refuses a write and then every later one, even after the space is
// back. KeepJetStream restarts JetStream in place once there is room, and
// what was stored before is still there.
func TestKeepJetStreamAfterDiskFull(t *testing.T) {
	t.Parallel()
	disk := smallDisk(t)
	srv, err := natsbus.StartEmbedded(natsbus.EmbeddedOptions{Listen: "none", StoreDir: filepath.Join(disk, "nats")}, testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := nats.Connect("", nats.InProcessServer(srv.Server))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	ctx := testutil.Context(t, 60*time.Second)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}}); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, 8<<10)
	publish := func() error {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := js.Publish(pctx, "s.x", body)
		return err
	}
	stored := 0
	for range 10 {
		if err := publish(); err != nil {
			t.Fatal(err)
		}
		stored++
	}
	junk := fillDisk(t, disk)
	testutil.Eventually(t, 20*time.Second, func() bool {
		if publish() == nil {
			stored++
			return false
		}
		return true
	}, "a publish refused on a full disk")
	if err := os.Remove(junk); err != nil {
		t.Fatal(err)
	}
	if err := publish(); err == nil {
		t.Log("the store took a write again without a restart (newer nats-server?)")
	}

	kctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { srv.KeepJetStream(kctx, 20*time.Millisecond) })
	t.Cleanup(func() { stop(); wg.Wait() })
	testutil.Eventually(t, 20*time.Second, func() bool { return publish() == nil }, "publishes accepted again once the disk has room")
	st, err := js.Stream(ctx, "S")
	if err != nil {
		t.Fatal(err)
	}
	if n := st.CachedInfo().State.Msgs; n < uint64(stored)+1 {
		t.Errorf("%d messages in the stream, want at least %d (lost some)", n, stored+1)
	}
}
