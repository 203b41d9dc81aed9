// Package chaos holds the bridge's chaos test: the real bridge binary and a
// real nats-server process, the Band emulator and a worker, a steady flow of
// user messages, and meanwhile SIGKILLs, restarts, dropped sockets, stalled
// heartbeats and 429/503 bursts. It proves nothing is lost and no reply is
// posted twice. Beside it, one test per other platform (AgentConnect, Chat
// API, PolyAI) kills the bridge under that platform's flow and checks it
// resumes; worker_test.go has their shared worker and nats-server helpers. Run it with `go test -tags chaos ./test/chaos/` (.ci/run
// does); it is kept out of the default test run.
package chaos
