"""REST routes declared once: the route, what it takes, what it answers.

Every route of ``/api/v1`` (and the probes) is declared through ``Api``: the
method and path, the ``Request`` model of its body or query, the ``Reply``
model of each answer, the errors it may give and who may call it. The same
declaration registers the aiohttp handler (which receives the parsed model)
and describes the route in the OpenAPI document, so the description cannot
drift from what the handler checks.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, get_args, get_origin, overload

from aiohttp import web
from multidict import MultiMapping
from pydantic import BaseModel, ValidationError

from handlers.common import RestDoor
from services.errors import Invalid
from services.wire.base import Reply, describe, parse

__all__ = ["Api", "Auth", "Operation"]

B = TypeVar("B", bound=BaseModel)
Response = web.StreamResponse
Plain = Callable[[web.Request], Awaitable[Response]]
Taking = Callable[[web.Request, B], Awaitable[Response]]

_MAX_QUERY_INT = 2**53 - 1


class Auth(enum.Enum):
    """Who may call a route."""

    NONE = "none"
    BEARER = "bearer"  # Authorization: Bearer <access token>
    SERVER_KEY = "server_key"  # X-Api-Key, for other services
    SIGNED = "signed"  # a URL the node signed (expires, signature)
    TWILIO = "twilio"  # X-Twilio-Signature


@dataclass(frozen=True, slots=True)
class Operation:
    method: str
    path: str
    summary: str
    tag: str
    auth: Auth
    answers: Mapping[int, type[Reply] | None]
    errors: tuple[int, ...]
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    description: str = ""
    answer_type: str = "application/json"
    body_type: str = "application/json"
    operation_id: str = ""
    examples: Mapping[str, Any] = field(default_factory=dict)


class Api:
    """One module's routes and their descriptions."""

    def __init__(self, door: RestDoor | None, *, tag: str) -> None:
        self._door = door
        self._tag = tag
        self.table = web.RouteTableDef()
        self.operations: list[Operation] = []

    @overload
    def route(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        auth: Auth,
        answers: Mapping[int, type[Reply] | None],
        body: type[B],
        errors: tuple[int, ...] = (),
        description: str = "",
        answer_type: str = "application/json",
        examples: Mapping[str, Any] | None = None,
    ) -> Callable[[Taking[B]], Taking[B]]: ...

    @overload
    def route(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        auth: Auth,
        answers: Mapping[int, type[Reply] | None],
        query: type[B],
        errors: tuple[int, ...] = (),
        description: str = "",
        answer_type: str = "application/json",
        body_type: str | None = None,
        examples: Mapping[str, Any] | None = None,
    ) -> Callable[[Taking[B]], Taking[B]]: ...

    @overload
    def route(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        auth: Auth,
        answers: Mapping[int, type[Reply] | None],
        errors: tuple[int, ...] = (),
        description: str = "",
        answer_type: str = "application/json",
        body_type: str | None = None,
        examples: Mapping[str, Any] | None = None,
    ) -> Callable[[Plain], Plain]: ...

    def route(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        auth: Auth,
        answers: Mapping[int, type[Reply] | None],
        body: type[BaseModel] | None = None,
        query: type[BaseModel] | None = None,
        errors: tuple[int, ...] = (),
        description: str = "",
        answer_type: str = "application/json",
        body_type: str | None = None,
        examples: Mapping[str, Any] | None = None,
    ) -> Callable[[Any], Any]:
        def register(handler: Any) -> Any:
            self.operations.append(
                Operation(
                    method=method.upper(),
                    path=path,
                    summary=summary,
                    tag=self._tag,
                    auth=auth,
                    answers=answers,
                    errors=errors,
                    body=body,
                    query=query,
                    description=description or (handler.__doc__ or "").strip(),
                    answer_type=answer_type,
                    body_type=body_type or "application/json",
                    operation_id=handler.__name__,
                    examples=examples or {},
                )
            )
            self.table.route(method.upper(), path)(self._wrap(handler, auth, body, query))
            return handler

        return register

    def _wrap(
        self,
        handler: Any,
        auth: Auth,
        body: type[BaseModel] | None,
        query: type[BaseModel] | None,
    ) -> Plain:
        door = self._door
        if door is None and (body is not None or auth in (Auth.BEARER, Auth.SERVER_KEY)):
            raise ValueError("a route with a body or credentials needs the RestDoor")

        async def credentials(request: web.Request) -> None:
            # Who is asking comes first: without credentials, a bad body is still 401.
            if door is not None and auth is Auth.BEARER:
                await door.identity(request)
            elif door is not None and auth is Auth.SERVER_KEY:
                door.server_key(request)

        if body is not None:
            assert door is not None

            async def with_body(request: web.Request) -> Response:
                await credentials(request)
                parsed = parse(body, await door.json(request), what="body")
                result: Response = await handler(request, parsed)
                return result

            return with_body
        if query is not None:

            async def with_query(request: web.Request) -> Response:
                await credentials(request)
                result: Response = await handler(request, parse_query(query, request.query))
                return result

            return with_query
        if auth in (Auth.BEARER, Auth.SERVER_KEY):

            async def checked(request: web.Request) -> Response:
                # The declaration enforces what it describes, whatever the handler does.
                await credentials(request)
                result: Response = await handler(request)
                return result

            return checked
        plain: Plain = handler
        return plain


def parse_query(model: type[B], query: MultiMapping[str]) -> B:
    """A query string as ``model``: whole numbers as digits, booleans as
    ``true``/``false``, an empty string as absent; ``invalid`` otherwise."""
    values: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        given = query.getall(name, [])
        if len(given) > 1:
            raise Invalid(f"{name} is given more than once")
        raw = given[0] if given else None
        if raw is None:
            continue
        kinds = _kinds(info.annotation)
        if raw == "" and (bool in kinds or int in kinds):
            raise Invalid(f"{name} is empty: leave it out, or give a value")
        if raw == "":
            continue
        if bool in kinds:
            if raw not in ("true", "false"):
                raise Invalid(f"{name} must be true or false")
            values[name] = raw == "true"
        elif int in kinds:
            digits = raw[1:] if raw.startswith("-") else raw
            if not digits.isdigit() or not digits.isascii() or len(digits) > 16:
                raise Invalid(f"{name} must be a whole number")
            number = int(raw)
            if abs(number) > _MAX_QUERY_INT:
                raise Invalid(f"{name} must be at most {_MAX_QUERY_INT}")
            values[name] = number
        else:
            values[name] = raw
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise Invalid(describe(exc)) from None


def _kinds(annotation: Any) -> set[Any]:
    if get_origin(annotation) is None:
        return {annotation}
    return {k for arg in get_args(annotation) for k in _kinds(arg)}
