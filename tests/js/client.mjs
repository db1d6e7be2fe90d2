// Drives Lifeline with the official socket.io-client, as a web or React Native app would.
// Usage: node client.mjs <url> <token|-> <transport> <event-to-await> [msgpack]
// Prints one JSON line per step; exits 0 when done.
import { io } from "socket.io-client";
import msgpackParser from "socket.io-msgpack-parser";
import { report } from "./seen.mjs";

const [url, token, transport, awaited, parser] = process.argv.slice(2);
const say = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const socket = io(url, {
  auth: token === "-" ? undefined : { token },
  transports: transport === "polling" ? ["polling"] : ["websocket"],
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
socket.on("connect", () => say({ step: "connected", transport: socket.io.engine.transport.name }));
socket.on(awaited, (data) => {
  say({ step: "event", data });
  clearTimeout(timer);
  socket.close();
});
