// Package testutil holds the test fixtures shared by the bridge's packages: a
// fresh embedded nats-server per test ([NATS]) and deadline-based waiting
// ([Eventually]) instead of fixed sleeps. Start with NATS.
package testutil
