package natsbus_test

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/bridgeworks/bridge/internal/testutil"
	"github.com/bridgeworks/bridge/natsbus"
)

// A store directory serves one embedded server at a time: a second one is
// refused with an error naming the directory and the holder, and the
// directory is free again once the first has shut down.
func TestEmbeddedLocksStoreDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	o := natsbus.EmbeddedOptions{Listen: "none", StoreDir: dir}
	first, err := natsbus.StartEmbedded(o, testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(first.Shutdown)
	second, err := natsbus.StartEmbedded(o, testutil.Logger(t))
	if err == nil {
		second.Shutdown()
		t.Fatal("a second server started on a store dir in use")
	}
	for _, want := range []string{dir, "in use", fmt.Sprintf("pid %d", os.Getpid())} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	first.Shutdown()
	third, err := natsbus.StartEmbedded(o, testutil.Logger(t))
	if err != nil {
		t.Fatalf("store dir not released at shutdown: %v", err)
	}
	third.Shutdown()
}
