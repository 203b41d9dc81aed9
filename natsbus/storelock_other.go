//go:build !unix

package natsbus

// lockStoreDir does nothing where flock does not exist: there, keep one
// embedded server per store directory by hand.
func lockStoreDir(string) (func(), error) { return func() {}, nil }

// freeSpace is unknown here (-1).
func freeSpace(string) int64 { return -1 }
