"""The OpenAPI 3.1 document of the REST API, built from the routes' declarations."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from handlers.api import Auth, Operation
from services.errors import (
    AppError,
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    RateLimited,
    TooLarge,
    Unauthorized,
    Unavailable,
)
from services.wire.base import RUNTIME, ErrorBody
from services.wire.schema import Components

__all__ = ["openapi_document"]

_ERRORS: dict[int, type[AppError]] = {
    400: Invalid,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: TooLarge,
    429: RateLimited,
    503: Unavailable,
}
_ERROR_TEXT = {
    400: "the request fails validation (`invalid`)",
    401: "no valid credentials (`unauthorized`)",
    403: "not allowed for the caller, or not a member (`forbidden`)",
    404: "no such thing (`not_found`)",
    409: "conflicts with what exists (`conflict`)",
    413: "the body is larger than the node takes (`too_large`)",
    429: "too many requests; see Retry-After (`rate_limited`)",
    503: "a store or broker is unreachable, or the node is draining (`unavailable`)",
}
_PARAM = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")

_DESCRIPTION = """\
Lifeline's REST API: accounts and sessions, chat rooms and their history, SOS
contacts and alerts, notifications and devices, uploads, donation tickers, and
the server API other services call with `X-Api-Key`.

Conventions: every id is a string; every timestamp is ISO 8601 UTC with
milliseconds and a `Z`; text lengths count Unicode code points; amounts are
integers in minor units with an ISO 4217 currency. A `limit` above its maximum
is clamped. Boolean query parameters are `true` or `false`.

Every error has one shape, `{"error": {"code", "message"}}`, with the code one of
`invalid` (400), `unauthorized` (401), `forbidden` (403), `not_found` (404),
`conflict` (409), `too_large` (413), `rate_limited` (429), `unavailable` (503),
`internal` (500). An unknown path is 404 and a wrong method 405 (`invalid`).

The real-time half (Socket.IO on `/socket.io/`) is described by the AsyncAPI
document at `/api/v1/asyncapi.json`.
"""


def openapi_document(
    operations: Iterable[Operation],
    *,
    version: str,
    server_url: str | None = None,
    event_types: Mapping[str, type[BaseModel]] | None = None,
    channel_names: Sequence[str] | None = None,
    upload_types: Sequence[str] | None = None,
    upload_max_bytes: int | None = None,
) -> dict[str, Any]:
    """The document; the node's own channels, upload types and event types (its settings
    and registries) fill in what the models leave open."""
    ops = sorted(operations, key=lambda o: (o.path, o.method))
    components = Components()
    components.ref(ErrorBody)
    for op in ops:
        for model in (op.body, op.query, *op.answers.values()):
            if model is not None:
                components.ref(model)
    for model in (event_types or {}).values():
        components.ref(model)
    refs, schemas = components.build()
    error_ref = refs[ErrorBody]
    runtime: dict[str, dict[str, Any]] = {}
    if channel_names:
        runtime["channels"] = {"enum": list(channel_names)}
    if upload_types:
        runtime["upload_types"] = {"enum": list(upload_types)}
    if upload_max_bytes:
        runtime["upload_bytes"] = {"maximum": upload_max_bytes}
    _fill_runtime(schemas, runtime)
    if event_types and "Envelope" in schemas:
        schemas["Envelope"] = _typed_envelopes(schemas["Envelope"], event_types, refs)

    paths: dict[str, dict[str, Any]] = {}
    for op in ops:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, refs, error_ref)

    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "Lifeline",
            "version": version,
            "description": _DESCRIPTION,
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "servers": [{"url": server_url or "/", "description": "this node"}],
        "tags": [{"name": t} for t in dict.fromkeys(op.tag for op in ops)],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "an access token from /auth/login, /auth/register or "
                    "/auth/refresh (15 minutes)",
                },
                "apiKey": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-Api-Key",
                    "description": "the server API's key, for other services",
                },
            },
        },
    }
    return document


def _operation(
    op: Operation, refs: dict[Any, dict[str, Any]], error_ref: dict[str, Any]
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "tags": [op.tag],
    }
    if op.description:
        out["description"] = op.description
    security = _security(op.auth)
    out["security"] = security
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PARAM.findall(op.path)
    ]
    if op.query is not None:
        schema = op.query.model_json_schema(ref_template="#/components/schemas/{model}")
        required = set(schema.get("required", ()))
        for name, prop in schema.get("properties", {}).items():
            param: dict[str, Any] = {
                "name": name,
                "in": "query",
                "required": name in required,
                "schema": {k: v for k, v in prop.items() if k not in ("title", "description")},
            }
            if "description" in prop:
                param["description"] = prop["description"]
            parameters.append(param)
    if parameters:
        out["parameters"] = parameters
    if op.body is not None:
        body: dict[str, Any] = {"schema": refs[op.body]}
        if op.examples.get("body") is not None:
            body["example"] = op.examples["body"]
        out["requestBody"] = {"required": True, "content": {op.body_type: body}}
    elif op.body_type != "application/json":
        out["requestBody"] = {
            "required": True,
            "content": {op.body_type: {"schema": {}}},
        }
    responses: dict[str, Any] = {}
    for status, model in op.answers.items():
        answer: dict[str, Any] = {"description": _answer_text(status)}
        if model is not None:
            answer["content"] = {op.answer_type: {"schema": refs[model]}}
        elif op.answer_type != "application/json" and status < 300 and status != 204:
            answer["content"] = {op.answer_type: {"schema": {"type": "string"}}}
        responses[str(status)] = answer
    for status in sorted(set(_errors(op))):
        error: dict[str, Any] = {
            "description": _ERROR_TEXT[status],
            "content": {"application/json": {"schema": error_ref}},
        }
        if status == 429:
            error["headers"] = {
                "Retry-After": {"description": "seconds", "schema": {"type": "integer"}}
            }
        responses[str(status)] = error
    out["responses"] = responses
    return out


def _fill_runtime(node: Any, runtime: Mapping[str, dict[str, Any]]) -> None:
    """Give the schemas a model marks ``x-runtime`` this node's bounds."""
    if isinstance(node, dict):
        name = node.pop(RUNTIME, None)
        if name is not None:
            node.update(runtime.get(name, {}))
        for value in node.values():
            _fill_runtime(value, runtime)
    elif isinstance(node, list):
        for value in node:
            _fill_runtime(value, runtime)


def _typed_envelopes(
    envelope: dict[str, Any],
    event_types: Mapping[str, type[BaseModel]],
    refs: Mapping[type[BaseModel], dict[str, Any]],
) -> dict[str, Any]:
    """The envelope as one schema per event type, each with its payload's schema."""
    properties = envelope["properties"]
    variants = []
    for type_, model in event_types.items():
        variants.append(
            {
                "type": "object",
                "title": f"{type_} envelope",
                "required": ["event_id", "type", "occurred_at", "payload"],
                "properties": {
                    "event_id": properties["event_id"],
                    "type": {"const": type_},
                    "occurred_at": {"type": "string", "format": "date-time"},
                    "payload": refs[model],
                },
            }
        )
    return {"description": envelope.get("description", ""), "oneOf": variants}


def _errors(op: Operation) -> list[int]:
    errors = list(op.errors)
    if op.body is not None or op.query is not None:
        errors.append(400)
    if op.body is not None:
        errors.append(413)
    if op.auth in (Auth.BEARER, Auth.SERVER_KEY):
        errors.append(401)
    if _PARAM.search(op.path):
        errors.append(404)
    if op.auth is not Auth.NONE or op.body is not None or op.path.startswith("/api/"):
        errors.append(503)
    unknown = set(errors) - set(_ERRORS)
    if unknown:
        raise ValueError(f"{op.method} {op.path}: no error for status {sorted(unknown)}")
    return errors


def _security(auth: Auth) -> list[dict[str, list[str]]]:
    if auth is Auth.BEARER:
        return [{"bearer": []}]
    if auth is Auth.SERVER_KEY:
        return [{"apiKey": []}]
    return []


def _answer_text(status: int) -> str:
    return {
        200: "done",
        201: "created",
        202: "accepted",
        204: "done, nothing to answer",
    }.get(status, "answer")
