// A contact's app as the contract asks: ack sos:alert with the callback, de-duplicate by id.
// Usage: node sos_ack.mjs <url> <token>
// Prints one JSON line per step and stays connected until it is stopped (or 15 s pass).
import { io } from "socket.io-client";
import { report } from "./seen.mjs";

const [url, token] = process.argv.slice(2);
const say = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const seen = new Set();
const socket = io(url, { auth: { token }, transports: ["websocket"], reconnection: false });
report(socket, say);
setTimeout(() => { say({ step: "timeout" }); process.exit(2); }, 15000);
socket.on("connect", () => say({ step: "connected" }));
socket.on("sos:alert", (data, ack) => {
  if (typeof ack === "function") ack();
  if (seen.has(data.alert.id)) return;
  seen.add(data.alert.id);
  say({ step: "alert", id: data.alert.id, acked: typeof ack === "function" });
});
