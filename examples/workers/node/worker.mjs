// A managed-dispatch worker on nats.js (core NATS only). The bridge sends
// each user message, a CloudEvents event, as a request to
// <prefix>.work.<platform>.<conn>.<room>.message_created; the worker answers
// "processing", then "processed" with the commands to run (one send_message
// that echoes the text and mentions the sender, as Band requires). The bridge
// runs them in the room's order, marks the message processed on the platform,
// and retries or dead-letters it when no answer comes.
//
//   npm ci
//   node worker.mjs nats://127.0.0.1:4222 support-bot [prefix] [platform]
//
// The bridge needs a [[dispatch]] rule for the connection; see docs/workers.md.
import { connect } from "@nats-io/transport-node";

const [natsURL, conn, prefix = "bridge", platform = "band"] = process.argv.slice(2);
if (!natsURL || !conn) {
  console.error("usage: node worker.mjs <nats-url> <conn> [prefix] [platform]");
  process.exit(2);
}

// Reconnect forever: a NATS restart or a rolling update of the NATS cluster
// must not stop the worker (the client's default gives up after 10 tries).
const nc = await connect({
  servers: natsURL,
  name: "example-node-worker",
  maxReconnectAttempts: -1,
  reconnectTimeWait: 1000,
});
(async () => {
  for await (const s of nc.status()) {
    if (s.type === "disconnect" || s.type === "reconnect") console.log(`nats: ${s.type}`);
  }
})().catch((err) => console.error(`nats status: ${err.message}`));
const subject = `${prefix}.work.${platform}.${conn}.*.message_created`;
// A queue group spreads the requests over every running worker.
const sub = nc.subscribe(subject, { queue: "echo-workers" });
await nc.flush(); // the subscription is registered: requests can come
console.log(`ready: answering ${subject}`);

for (const sig of ["SIGINT", "SIGTERM"]) {
  // Finish the request in hand, then stop; with NATS away there is nothing
  // to drain, so just close (the bridge sends unanswered requests again).
  process.on(sig, () => nc.drain().catch(() => nc.close()));
}

// A reply that cannot be sent (NATS away) is not fatal: the bridge times
// the attempt out and sends the request again.
const respond = (m, reply) => {
  try {
    m.respond(JSON.stringify(reply));
  } catch (err) {
    console.error(`reply not sent: ${err.message}`);
  }
};

for await (const m of sub) {
  let event;
  try {
    event = m.json();
  } catch (err) {
    respond(m, { status: "failed", error: `not an event: ${err.message}` }); // no retry: dead-lettered
    continue;
  }
  respond(m, { status: "processing" }); // optional: restarts the bridge's timeout

  const msg = event.data ?? {};
  const commands = [];
  if (msg.sender_type !== "Agent") { // never answer another agent
    commands.push({
      command: "send_message",
      args: { content: `echo: ${msg.content}`, mentions: [{ id: msg.sender_id }] },
    });
  }
  respond(m, { status: "processed", commands });
  console.log(`answered ${event.id} in room ${event.room}`);
}
const err = await nc.closed();
if (err) {
  console.error(`nats connection closed: ${err.message}`);
  process.exit(1);
}
