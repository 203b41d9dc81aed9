//go:build unix

package e2e

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// lockInstall holds an exclusive lock on dir/.npm-install.lock until the
// returned func is called: tests run in parallel (in one test binary or
// several) would otherwise run npm ci in the same directory at once and
// corrupt each other's node_modules. The file is beside node_modules, not
// in it: npm ci removes node_modules first. The lock is the kernel's
// (flock), so a killed test never leaves it behind.
func lockInstall(t testing.TB, dir string) (unlock func()) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(dir, ".npm-install.lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatalf("npm install lock: %v", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		_ = f.Close()
		t.Fatalf("npm install lock: %v", err)
	}
	return func() { _ = f.Close() } // closing releases the lock
}
