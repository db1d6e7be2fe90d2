"""What every wire model shares: the base classes, the field types, and ``parse``.

A request body, query, socket payload or Kafka payload is a ``Request`` model:
strict (a string is never a number, a number never a boolean), unknown fields
ignored (the contract lets payloads grow). ``parse`` turns a failure into the
contract's ``invalid`` with the field named. An answer, ack or server event is
a ``Reply`` model: it describes what the server sends (the OpenAPI and AsyncAPI
documents are built from both kinds) and tests hold the server to it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from services.errors import Invalid

__all__ = [
    "EMAIL_PATTERN",
    "RUNTIME",
    "Amount",
    "Currency",
    "ExternalId",
    "Id",
    "Int",
    "Reply",
    "Request",
    "Timestamp",
    "integral",
    "parse",
    "text",
    "visible",
]

# A schema marked with this gets the node's own bounds in the API documents (its enum or
# maximum): channels, upload types and sizes are settings and registries, not constants.
RUNTIME = "x-runtime"

# An email address: something, @, a domain with a dot; no spaces or control characters
# (one class, the same for the schema's regex engine and Python's).
EMAIL_PATTERN = r"^[^@\x00-\x20\x7f]{1,64}@[^@\x00-\x20\x7f]+\.[^@\x00-\x20\x7f]{1,63}$"

# No NUL anywhere: PostgreSQL text cannot hold it.
_NO_NUL = r"^[^\x00]*$"
# At least one character that is not white space (the value is stored stripped).
_VISIBLE = r"^[^\x00]*[^\s\x00][^\x00]*$"
_ISO_Z = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$"


class Request(BaseModel):
    """What a client sends: checked strictly, unknown fields ignored."""

    model_config = ConfigDict(strict=True, extra="ignore", allow_inf_nan=False, frozen=True)


class Reply(BaseModel):
    """What the server sends: described, never parsed on the hot path."""

    model_config = ConfigDict(extra="allow")


def integral(value: Any) -> Any:
    # JSON Schema's integer is any number without a fraction: 3.0 is 3.
    if isinstance(value, float) and value.is_integer() and abs(value) <= 2**53:
        return int(value)
    return value


Int = Annotated[int, BeforeValidator(integral)]


def text(max_len: int, *, min_len: int = 1, **extra: Any) -> Any:
    """A string of ``min_len``..``max_len`` code points without NUL."""
    return Field(min_length=min_len, max_length=max_len, pattern=_NO_NUL, **extra)


def visible(max_len: int, **extra: Any) -> Any:
    """A string with something to see in it, kept without the white space around it."""
    return Field(min_length=1, max_length=max_len, pattern=_VISIBLE, **extra)


Id = Annotated[
    str,
    text(
        64,
        examples=["0b6f3c1e-8d2a-4c57-9a51-2f0e4a7d9c10"],
        json_schema_extra={"format": "uuid"},
        description="a Lifeline id (a UUID); one that names nothing is not_found or forbidden",
    ),
]
ExternalId = Annotated[
    str, text(64, examples=["p-42"], description="an id another service gave it")
]
Timestamp = Annotated[
    str,
    Field(pattern=_ISO_Z, examples=["2026-11-22T10:00:00.000Z"], description="ISO 8601 UTC"),
]
Amount = Annotated[int, Field(ge=0, description="integer, in the currency's minor units")]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$", examples=["EUR"], description="ISO 4217")]
ErrorCode = Literal[
    "invalid",
    "unauthorized",
    "forbidden",
    "not_found",
    "conflict",
    "rate_limited",
    "too_large",
    "unavailable",
    "internal",
]

M = TypeVar("M", bound=BaseModel)

_MESSAGES = {
    "missing": "is required",
    "model_type": "must be a JSON object",
    "dict_type": "must be a JSON object",
    "string_type": "must be a string",
    "int_type": "must be a whole number",
    "float_type": "must be a number",
    "bool_type": "must be true or false",
    "list_type": "must be a list",
    "finite_number": "must be a finite number",
}


def parse(model: type[M], data: object, *, what: str = "payload") -> M:
    """``data`` as ``model``, or ``Invalid`` naming the first field that is wrong."""
    if not isinstance(data, dict):
        raise Invalid(f"{what} must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise Invalid(describe(exc)) from None


def describe(exc: ValidationError) -> str:
    """One line a client developer can act on: the field, then what is wrong with it."""
    first = exc.errors(include_url=False)[0]
    where = ".".join(str(part) for part in first["loc"]) or "payload"
    kind = first["type"]
    if kind == "string_pattern_mismatch":
        pattern = str((first.get("ctx") or {}).get("pattern", ""))
        if pattern == _NO_NUL:
            return f"{where} must not contain NUL characters"
        if pattern == _VISIBLE:
            return f"{where} must not be blank"
    message = _MESSAGES.get(kind)
    if message is None:
        message = first["msg"][0].lower() + first["msg"][1:] if first["msg"] else "is invalid"
    return f"{where} {message}"


class ErrorDetail(Reply):
    code: ErrorCode
    message: str
    retry_after: int | None = Field(
        default=None, description="with rate_limited: seconds to wait before trying again"
    )
    totp_required: bool | None = Field(
        default=None, description="with unauthorized on login: the account needs its TOTP code"
    )


class ErrorBody(Reply):
    """Every REST error: the same shape on every path."""

    error: ErrorDetail


class ErrorAck(Reply):
    """Every failed ack."""

    ok: Literal[False]
    error: ErrorDetail
