"""The AsyncAPI 3.0 document of the Socket.IO API, built from the event catalog."""

from __future__ import annotations

from typing import Any

from realtime import rooms
from realtime.catalog import EventCatalog
from services.wire.base import ErrorAck
from services.wire.schema import Components

__all__ = ["asyncapi_document", "message_key"]

_CHANNELS = {rooms.MAIN: "main", rooms.LIVE: "live"}

_DESCRIPTION = """\
Lifeline's real-time API: Socket.IO protocol v5 over Engine.IO v4 at `/socket.io/`
(WebSocket on its own, or HTTP long-polling and the upgrade on a single node; across
several nodes without sticky sessions use `transports: ["websocket"]`). The official
socket.io-client v4 and python-socketio's client work unchanged with the default JSON
parser; the socket.io-msgpack-parser is served on its own path (`/socket.io-msgpack/`).

**Acks.** Every client event takes an ack callback. The ack is flat: `{"ok": true,
...fields}` or `{"ok": false, "error": {"code", "message"}}`, the code one of
`invalid`, `unauthorized`, `forbidden`, `not_found`, `conflict`, `rate_limited`,
`too_large`, `unavailable`, `internal`. A bad payload never disconnects the socket.
Unknown events get no ack.

**Receipts for SOS.** `sos:alert` and `sos:escalated` come with an ack request: call
the ack callback on receipt (any value, or none). A contact whose socket does not ack
within a few seconds gets a push, and an SMS when no push can go out: a client that
never acks gets both (de-duplicate by `alert.id`).

**Reconnecting.** On every (re)connect: `chat:sync` with the last seq of each room the
app shows, apply what comes in seq order (`more` lists rooms to sync again), then
`chat:join` each room. Events arriving meanwhile carry seqs: drop those already applied.
`sos:alert` for open alerts is sent again after each connect.

**Refreshing.** A socket lives as long as its access token. 60 s before expiry the
server emits `auth:expiring`; answer with `auth:refresh` and a fresh access token from
`POST /api/v1/auth/refresh`. Without it the server emits `auth:expired` and disconnects;
connect again with a fresh token. Every event sent after expiry is `unauthorized`.
"""


def message_key(name: str, suffix: str = "") -> str:
    """A component key for an event name (``chat:send`` -> ``chat.send``)."""
    return name.replace(":", ".") + suffix


def asyncapi_document(catalog: EventCatalog, *, version: str) -> dict[str, Any]:
    components = Components()
    components.ref(ErrorAck)
    for client in catalog.client_events:
        components.ref(client.payload)
        components.ref(client.ack)
    for server in catalog.server_events:
        components.ref(server.payload)
    refs, schemas = components.build()

    messages: dict[str, Any] = {}
    channels: dict[str, Any] = {
        "main": {
            "address": rooms.MAIN,
            "title": "Namespace /",
            "description": "Authenticated: the CONNECT packet's auth object carries "
            '`{"token": "<access token>"}`. A missing, expired, malformed or revoked token '
            'gets CONNECT_ERROR `{"message": "unauthorized"}`, a blocked user '
            '`{"message": "forbidden"}`.',
            "messages": {},
        },
        "live": {
            "address": rooms.LIVE,
            "title": "Namespace /live",
            "description": "Public and read-only: donation tickers. No token needed.",
            "messages": {},
        },
    }
    operations: dict[str, Any] = {}

    def add_message(channel: str, key: str, name: str, summary: str, schema: Any) -> Any:
        messages[key] = {"name": name, "summary": summary, "payload": schema}
        channels[channel]["messages"][key] = {"$ref": f"#/components/messages/{key}"}
        return {"$ref": f"#/channels/{channel}/messages/{key}"}

    for client in catalog.client_events:
        channel = _CHANNELS[client.namespace]
        key = message_key(client.name)
        sent = add_message(channel, key, client.name, client.summary, refs[client.payload])
        ack = add_message(
            channel,
            message_key(client.name, ".ack"),
            f"{client.name} ack",
            f"The ack of {client.name}.",
            _ack_schema(refs[client.ack], refs[ErrorAck]),
        )
        operations[key] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{channel}"},
            "summary": client.summary,
            "messages": [sent],
            "reply": {"channel": {"$ref": f"#/channels/{channel}"}, "messages": [ack]},
        }
    for server in catalog.server_events:
        channel = _CHANNELS[server.namespace]
        key = message_key(server.name)
        if key in messages:  # the same name goes both ways (chat:typing, sos:location)
            key = message_key(server.name, ".emit")
        emitted = add_message(channel, key, server.name, server.summary, refs[server.payload])
        operation: dict[str, Any] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{channel}"},
            "summary": server.summary,
            "messages": [emitted],
        }
        if server.asks_ack:
            receipt = add_message(
                channel,
                message_key(server.name, ".receipt"),
                f"{server.name} receipt",
                "The client's ack of the event: any value, or none.",
                {},
            )
            operation["reply"] = {
                "channel": {"$ref": f"#/channels/{channel}"},
                "messages": [receipt],
            }
        operations[key] = operation

    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Lifeline real-time API",
            "version": version,
            "description": _DESCRIPTION,
            "license": {"name": "Apache-2.0"},
        },
        "defaultContentType": "application/json",
        "servers": {
            "node": {
                "host": "127.0.0.1:8080",
                "protocol": "ws",
                "pathname": "/socket.io/",
                "description": "a Lifeline node (LIFELINE_HOST, LIFELINE_PORT); Socket.IO v5",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


def _ack_schema(fields: dict[str, Any], error: dict[str, Any]) -> dict[str, Any]:
    ok = {
        "allOf": [
            {"type": "object", "required": ["ok"], "properties": {"ok": {"const": True}}},
            fields,
        ]
    }
    return {"oneOf": [ok, error]}
