// Conformance check: the Band emulator must work with the official
// phoenix JS client, exactly as Band's TypeScript SDK uses it.
//
//   node conformance.mjs <baseUrl> <apiKey> <agentId> <roomId>
//
// Protocol on stdout, one line each, for the Go test driving it:
//   JOINED        all joins done; post a message mentioning the agent now
//   MESSAGE <id>  the message_created received
//   OK            every check passed (exit 0)
// Failures go to stderr as "FAIL: ..." with exit 1.
import { Socket } from "phoenix";
import WebSocket from "ws"; // Node 20 has no global WebSocket

const [baseUrl, apiKey, agentId, roomId] = process.argv.slice(2);
if (!roomId) {
  console.error("usage: node conformance.mjs <baseUrl> <apiKey> <agentId> <roomId>");
  process.exit(2);
}

const state = { step: "connect", heartbeatReplies: 0, message: null, done: false };

function fail(msg) {
  console.error(`FAIL: ${msg} (step: ${state.step}, heartbeat replies: ${state.heartbeatReplies})`);
  process.exit(1);
}

const deadline = setTimeout(() => fail("timed out"), 30_000);

// phoenix appends "/websocket" and vsn=2.0.0 itself.
const endpoint = baseUrl.replace(/^http/, "ws") + "/api/v1/socket";
const socket = new Socket(endpoint, {
  transport: WebSocket,
  params: { api_key: apiKey, agent_id: agentId },
  heartbeatIntervalMs: 250, // short, but with room for a loaded CI machine
  reconnectAfterMs: () => 60_000, // a reconnect would hide a failure
  timeout: 5_000,
});

socket.onMessage(({ topic, event, payload }) => {
  if (topic === "phoenix" && event === "phx_reply" && payload.status === "ok") {
    state.heartbeatReplies++;
  }
});
socket.onError((err) => {
  if (!state.done) fail(`socket error: ${err?.message ?? err}`);
});
socket.onClose((ev) => {
  if (!state.done) fail(`socket closed: code ${ev?.code} ${ev?.reason ?? ""}`);
});

function join(topic) {
  return new Promise((resolve, reject) => {
    const channel = socket.channel(topic, {});
    channel
      .join()
      .receive("ok", () => resolve(channel))
      .receive("error", (resp) => reject(Object.assign(new Error("join refused"), { channel, resp })))
      .receive("timeout", () => reject(new Error(`join ${topic}: timeout`)));
  });
}

async function expectRefused(topic, reason) {
  try {
    const channel = await join(topic);
    channel.leave();
    fail(`join ${topic} succeeded, want error ${reason}`);
  } catch (err) {
    if (!err.resp) fail(`join ${topic}: ${err.message}`);
    err.channel.leave(); // stop phoenix's automatic rejoin
    if (err.resp.reason !== reason) {
      fail(`join ${topic}: reason ${JSON.stringify(err.resp)}, want ${reason}`);
    }
  }
}

function waitUntil(what, cond) {
  return new Promise((resolve) => {
    const tick = setInterval(() => {
      if (cond()) {
        clearInterval(tick);
        resolve();
      }
    }, 10);
  }).then(() => {
    state.step = `after ${what}`;
  });
}

async function run() {
  state.step = "join agent_control";
  await join(`agent_control:${agentId}`);
  state.step = "join agent_rooms";
  await join(`agent_rooms:${agentId}`);
  state.step = "join room topics";
  const chat = socket.channel(`chat_room:${roomId}`, {});
  chat.on("message_created", (payload) => {
    state.message = payload;
  });
  await new Promise((resolve, reject) => {
    chat.join().receive("ok", resolve).receive("error", (r) => reject(new Error(`chat_room: ${JSON.stringify(r)}`)));
  });
  await join(`room_participants:${roomId}`);

  state.step = "refused joins";
  await expectRefused("bogus:1", "unmatched topic");
  await expectRefused("chat_room:00000000-0000-4000-8000-000000000000", "unauthorized");

  state.step = "wait for message_created";
  console.log("JOINED");
  await waitUntil("message_created", () => state.message !== null);
  const m = state.message;
  const mentions = m.metadata?.mentions ?? [];
  if (m.message_type !== "text" || m.sender_type !== "User" || typeof m.content !== "string" || !m.inserted_at) {
    fail(`bad message_created payload ${JSON.stringify(m)}`);
  }
  if (!mentions.some((x) => x.id === agentId)) fail("message_created does not mention the agent");
  console.log(`MESSAGE ${m.id}`);

  state.step = "heartbeats";
  await waitUntil("heartbeats", () => state.heartbeatReplies >= 2);

  state.step = "leave";
  await new Promise((resolve, reject) => {
    chat.leave().receive("ok", resolve).receive("timeout", () => reject(new Error("leave timeout")));
  });

  state.done = true;
  socket.disconnect(() => {
    clearTimeout(deadline);
    console.log("OK");
    process.exit(0);
  });
}

socket.connect();
run().catch((err) => fail(err.message));
