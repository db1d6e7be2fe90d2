// Reports what a socket receives (events and acks) as JSON lines, so that the Python side
// holds the official client's view to the AsyncAPI document (tests/contract.py).
export function report(socket, say) {
  socket.onAny((event, ...args) => {
    const data = args.length && typeof args[0] !== "function" ? args[0] : null;
    say({ seen: "event", event, data });
  });
}

export async function callWithAck(socket, say, event, payload) {
  const ack = await socket.emitWithAck(event, payload);
  say({ seen: "ack", event, data: ack });
  return ack;
}
