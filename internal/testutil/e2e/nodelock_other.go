//go:build !unix

package e2e

import "testing"

// lockInstall does nothing where flock does not exist: there, the tests
// that need npm packages install them one at a time only by chance.
func lockInstall(testing.TB, string) func() { return func() {} }
