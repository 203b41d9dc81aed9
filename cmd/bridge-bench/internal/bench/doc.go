// Package bench is the benchmark harness behind cmd/bridge-bench: it runs the
// bridge and straight-line baselines against the platform emulators and an
// embedded NATS server on one machine, and reports each figure as the median
// of N runs with min and max.
//
// Start with [Run]: it takes a [Plan] (sizes and run count, see [QuickPlan]
// and [FullPlan]) and the names of the scenarios to run, and returns a
// [Report] that prints as a table ([Report.WriteTable]) or JSON.
//
// Scenarios (one file each):
//
//   - inbound (inbound.go): the Band emulator pushing message_created over 1
//     and 100 agent sockets as fast as the consumer reads; events/s stored in
//     BRIDGE_EVENTS for a frame-counting reader (the source's ceiling),
//     baseline 1 (raw WebSocket → JSON decode → JetStream PublishAsync,
//     baseline1.go) and the bridge.
//   - latency (latency.go): the same two pipelines paced at 2,000 events/s;
//     p50/p99/p999 from the emulator's send to a JetStream consumer.
//   - commands (commands.go, commands_bridge.go): baseline 2 (JetStream
//     consume → HTTP POST to the emulator's REST API) and the same workload
//     through the bridge's command executor.
//   - dispatch (dispatch.go): the managed-dispatch round trip (emulator
//     send → worker → /processed) at 1,000 msg/s, and a straight-line
//     dispatch baseline at the same rate doing the work the bridge does by
//     contract (push read from a raw WebSocket → event stored in
//     BRIDGE_EVENTS and its id recorded → request to a queue group →
//     reply → the REST calls that record the message processed → event
//     recorded finished → ack); the bridge's CPU per message over the
//     baseline's.
//   - scale (scale.go): memory and goroutines per idle agent connection, with
//     the emulator, the NATS server and the bridge in three child processes
//     (child.go), so the bridge's RSS and heap and the NATS server's are
//     measured apart; with the start-up time and the emulator's busiest
//     second of socket dials.
//   - scale_polyai (scale_polyai.go): memory and goroutines per idle PolyAI
//     session, resumed from the state bucket at start, the PolyAI emulator
//     and NATS in one child process and the bridge in another; with the
//     busiest second of socket dials and of heartbeats the emulator saw.
//   - gapfill (gapfill.go): time for a starting bridge to store a backlog of
//     pending messages found by catch-up.
//   - chatapi (chatapi.go): streamed text_delta fragments/s stored in
//     BRIDGE_EVENTS, the Chat API emulator streaming many-fragment replies
//     to chat commands a worker publishes, against a straight-line SSE →
//     JetStream baseline (an HTTP client per agent publishing each
//     fragment's event with Nats-Msg-Id, each PubAck awaited as the bridge
//     does); with the CPU per fragment of both.
//
// Every run builds its own emulator and NATS server (fresh store directory),
// so runs do not share state; baselines run in the same process and the same
// run as the bridge, so their ratios hold on a noisy machine. Throughput
// figures come with the process CPU per event, which other processes on a
// shared machine disturb far less than wall-clock rates, and every scenario
// records how much CPU other processes used meanwhile ("machine" figures;
// targets measured under more than half a core of such load are flagged).
package bench
