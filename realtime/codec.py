"""The JSON python-socketio speaks with: orjson, and no packet lost to a payload it refuses.

A packet whose payload does not parse (nested past orjson's 1,024 levels, say)
would be dropped by python-socketio with no ack at all. When its event name is
still readable, it is handed on with ``UNPARSEABLE`` as the payload, and the
door answers the contract's ``invalid``.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

__all__ = ["UNPARSEABLE", "SocketJson"]

_EVENT = re.compile(r'^\[\s*("(?:[^"\\]|\\.){1,200}")\s*,')


class _Unparseable:
    def __repr__(self) -> str:
        return "UNPARSEABLE"


UNPARSEABLE = _Unparseable()


class SocketJson:
    """orjson behind the ``json`` interface python-socketio expects."""

    @staticmethod
    def dumps(obj: Any, **_: Any) -> str:
        try:
            return orjson.dumps(obj).decode()
        except TypeError:  # integers beyond 64 bits, which JSON allows
            return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)

    @staticmethod
    def loads(text: str | bytes, **_: Any) -> Any:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            head = text[:300] if isinstance(text, str) else text[:300].decode(errors="replace")
            match = _EVENT.match(head)
            if match is None:
                raise
            return [json.loads(match.group(1)), UNPARSEABLE]
