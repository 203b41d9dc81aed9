// Package chaos holds the bridge's chaos test: the real bridge binary and a
// real nats-server process, the Band emulator and a worker, a steady flow of
// user messages, and meanwhile SIGKILLs, restarts, dropped sockets, stalled
// heartbeats and 429/503 bursts. It proves nothing is lost and no reply is
// posted twice. Run it with `go test -tags chaos ./test/chaos/` (.ci/run
// does); it is kept out of the default test run.
package chaos
