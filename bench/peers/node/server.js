// The idiomatic Node.js socket.io v4 server doing what Lifeline's /live does:
// live:subscribe joins project:<id>, POST /api/v1/publish broadcasts to it,
// and with REDIS_URL the official @socket.io/redis-adapter spreads it to peers.
"use strict";
const http = require("http");
const { Server } = require("socket.io");

const port = Number(process.env.PORT || 3000);
const httpServer = http.createServer((req, res) => {
  if (req.method === "POST" && req.url === "/api/v1/publish") {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const body = JSON.parse(Buffer.concat(chunks).toString());
      const room = body.channel; // "project:<id>"
      io.of("/live").to(room).emit(body.event, body.data);
      packed.of("/live").to(room).emit(body.event, body.data);
      res.writeHead(202, { "Content-Type": "application/json" });
      res.end('{"ok":true}');
    });
    return;
  }
  if (req.url === "/healthz") { res.writeHead(200); res.end("ok"); return; }
  res.writeHead(404); res.end();
});
const io = new Server(httpServer, { transports: ["websocket"], perMessageDeflate: false });
// socket.io-msgpack-parser clients on their own path, as Lifeline offers them.
const packed = new Server(httpServer, {
  path: "/socket.io-msgpack/",
  parser: require("socket.io-msgpack-parser"),
  transports: ["websocket"],
  perMessageDeflate: false,
});
for (const server of [io, packed]) {
  server.of("/live").on("connection", (socket) => {
    socket.on("live:subscribe", (payload, ack) => {
      socket.join("project:" + payload.project_id);
      if (typeof ack === "function") ack({ ok: true, ticker: { project_id: payload.project_id } });
    });
  });
}

async function main() {
  if (process.env.REDIS_URL) {
    const { createClient } = require("redis");
    const { createAdapter } = require("@socket.io/redis-adapter");
    const pub = createClient({ url: process.env.REDIS_URL });
    const sub = pub.duplicate();
    await Promise.all([pub.connect(), sub.connect()]);
    io.adapter(createAdapter(pub, sub, { key: process.env.REDIS_PREFIX || "bench" }));
    packed.adapter(createAdapter(pub, sub, { key: (process.env.REDIS_PREFIX || "bench") + "-msgpack" }));
  }
  httpServer.listen(port, "127.0.0.1", () => console.log("node socket.io listening on " + port));
}
main();
