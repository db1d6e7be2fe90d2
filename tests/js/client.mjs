// Drives Lifeline with the official socket.io-client, as a web or React Native app would.
// Usage: node client.mjs <url> <token|-> <websocket|polling|upgrade> <event-to-await> [msgpack]
// "upgrade" starts on long-polling and upgrades to WebSocket, as browsers do by default.
// Prints one JSON line per step; exits 0 when done.
import { io } from "socket.io-client";
import msgpackParser from "socket.io-msgpack-parser";
import { callWithAck, report } from "./seen.mjs";

const [url, token, transport, awaited, parser] = process.argv.slice(2);
const say = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const socket = io(url, {
  auth: token === "-" ? undefined : { token },
  transports: { polling: ["polling"], upgrade: ["polling", "websocket"] }[transport] ?? [
    "websocket",
  ],
  reconnection: false,
  timeout: 5000,
  ...(parser === "msgpack" ? { parser: msgpackParser, path: "/socket.io-msgpack/" } : {}),
});
report(socket, say);
const timer = setTimeout(() => { say({ step: "timeout" }); process.exit(2); }, 10000);
socket.on("connect_error", (err) => {
  say({ step: "connect_error", message: err.message });
  clearTimeout(timer);
  socket.close();
});
socket.on("connect", async () => {
  const engine = socket.io.engine;
  say({ step: "connected", transport: engine.transport.name });
  if (transport === "upgrade") {
    if (engine.transport.name !== "websocket") {
      await new Promise((resolve) => engine.once("upgrade", resolve));
    }
    say({ step: "upgraded", transport: engine.transport.name });
  }
  const ack = await callWithAck(socket, say, "chat:sync", { rooms: {} });
  say({ step: "ack", ok: ack.ok });
});
socket.on(awaited, (data) => {
  say({ step: "event", data });
  clearTimeout(timer);
  socket.close();
});
