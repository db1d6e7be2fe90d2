// The refresh recipe of the README, as an app runs it: on auth:expiring, refresh over
// REST, then auth:refresh in band; the socket is never reconnected.
// Usage: node refresh.mjs <url> <access token> <refresh token>
// Prints one JSON line per step and stays connected until it is stopped (or 20 s pass).
import { io } from "socket.io-client";
import { callWithAck, report } from "./seen.mjs";

const [url, access, refresh] = process.argv.slice(2);
const say = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
let refreshToken = refresh;
const socket = io(url, { auth: { token: access }, transports: ["websocket"], reconnection: false });
report(socket, say);
setTimeout(() => { say({ step: "timeout" }); process.exit(2); }, 20000);
socket.on("connect", () => say({ step: "connected", id: socket.id }));
socket.on("disconnect", (reason) => say({ step: "disconnected", reason }));
socket.on("auth:expired", () => say({ step: "expired" }));
socket.on("auth:expiring", async () => {
  const answer = await fetch(url + "/api/v1/auth/refresh", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ refresh_token: refreshToken }),
  });
  const pair = await answer.json();
  refreshToken = pair.refresh_token;
  const ack = await callWithAck(socket, say, "auth:refresh", { token: pair.access_token });
  say({ step: "refreshed", ok: ack.ok, id: socket.id });
});
socket.on("greeting", (data) => say({ step: "event", data, id: socket.id }));
