"""Parsing of untrusted payloads into typed values, raising ``Invalid``.

Doors (REST, socket events, Kafka) call these before any service call, so a
service only ever sees well-typed input. Unknown fields are ignored, as the
contract lets payloads grow; known fields of the wrong type are ``invalid``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

from services.errors import Invalid

__all__ = [
    "Payload",
    "as_payload",
]


def as_payload(data: object, what: str = "payload") -> Payload:
    if not isinstance(data, Mapping):
        raise Invalid(f"{what} must be a JSON object")
    return Payload(data)


class Payload:
    """Typed accessors over one JSON object."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data = data

    def __iter__(self) -> Iterator[str]:
        return (str(k) for k in self._data)

    def raw_object(self) -> dict[str, Any]:
        return dict(self._data)

    def has(self, key: str) -> bool:
        return self._data.get(key) is not None

    def contains(self, key: str) -> bool:
        """Present at all, even as null."""
        return key in self._data

    def raw(self, key: str) -> Any:
        return self._data.get(key)

    def string(
        self,
        key: str,
        *,
        min_len: int = 1,
        max_len: int = 256,
        strip: bool = False,
    ) -> str:
        value = self._data.get(key)
        if value is None:
            raise Invalid(f"{key} is required")
        if not isinstance(value, str):
            raise Invalid(f"{key} must be a string")
        if strip:
            value = value.strip()
        # len() counts code points, as the contract counts text.
        if len(value) < min_len:
            raise Invalid(f"{key} must be at least {min_len} characters")
        if len(value) > max_len:
            raise Invalid(f"{key} must be at most {max_len} characters")
        if "\x00" in value:
            raise Invalid(f"{key} must not contain NUL characters")
        return value

    def opt_string(self, key: str, *, min_len: int = 0, max_len: int = 256) -> str | None:
        if self._data.get(key) is None:
            return None
        return self.string(key, min_len=min_len, max_len=max_len)

    def identifier(self, key: str) -> str:
        """An id: the contract makes every id a string."""
        return self.string(key, min_len=1, max_len=64)

    def opt_identifier(self, key: str) -> str | None:
        return None if self._data.get(key) is None else self.identifier(key)

    def integer(self, key: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
        value = self._data.get(key)
        if value is None:
            raise Invalid(f"{key} is required")
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid(f"{key} must be a whole number")
        if minimum is not None and value < minimum:
            raise Invalid(f"{key} must be at least {minimum}")
        if maximum is not None and value > maximum:
            raise Invalid(f"{key} must be at most {maximum}")
        return value

    def number(self, key: str, *, minimum: float, maximum: float | None = None) -> float:
        value = self._data.get(key)
        if value is None:
            raise Invalid(f"{key} is required")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise Invalid(f"{key} must be a number")
        number = float(value)
        if not math.isfinite(number):
            raise Invalid(f"{key} must be a finite number")
        if number < minimum or (maximum is not None and number > maximum):
            bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
            raise Invalid(f"{key} must be {bound}")
        return number

    def opt_number(self, key: str, *, minimum: float, maximum: float | None = None) -> float | None:
        if self._data.get(key) is None:
            return None
        return self.number(key, minimum=minimum, maximum=maximum)

    def boolean(self, key: str) -> bool:
        value = self._data.get(key)
        if not isinstance(value, bool):
            raise Invalid(f"{key} must be true or false")
        return value

    def choice(self, key: str, allowed: tuple[str, ...], *, default: str | None = None) -> str:
        if self._data.get(key) is None and default is not None:
            return default
        value = self.string(key, max_len=64)
        if value not in allowed:
            raise Invalid(f"{key} must be one of {', '.join(allowed)}")
        return value

    def id_list(self, key: str, *, max_items: int, min_items: int = 0) -> list[str]:
        value = self._data.get(key)
        if value is None:
            value = []
        if not isinstance(value, list):
            raise Invalid(f"{key} must be a list of ids")
        if len(value) > max_items:
            raise Invalid(f"{key} must have at most {max_items} items")
        if len(value) < min_items:
            raise Invalid(f"{key} must have at least {min_items} items")
        out: list[str] = []
        for item in value:
            if not isinstance(item, str) or not 1 <= len(item) <= 64 or "\x00" in item:
                raise Invalid(f"{key} must be a list of ids (strings)")
            out.append(item)
        return out

    def mapping(self, key: str) -> Payload:
        value = self._data.get(key)
        if not isinstance(value, Mapping):
            raise Invalid(f"{key} must be a JSON object")
        return Payload(value)
