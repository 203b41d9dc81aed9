// Package e2e runs the whole stack inside a test: the Band emulator, the
// bridge with its embedded NATS server listening on a random loopback port,
// and whatever worker the test starts against [Stack.NATSURL]. The example
// workers' tests use it to prove that a worker's replies reach the platform.
//
// Start with [Start]; post user messages with [Stack.Post] and wait for the
// worker's answers with [Stack.WaitEchoed]. [Node] installs a Node.js
// example's dependencies, or skips the test where Node.js is missing.
package e2e
