"""Who has a socket where: presence entries that expire on their own.

An entry is one socket of one user in one scope (``room:<id>``, or ``online``
for "connected at all"), with an expiry time that its node keeps pushing
forward while the socket lives. A node that dies stops pushing, its entries
lapse, and the next sweep by any node reports the users that left with them.
Counting entries per (scope, user) says when a user's last socket is gone.

``InProcessPresence`` serves a single node; ``RedisPresence`` a cluster, with
every change made by one Lua script so nodes never see half an update.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Protocol

from storage.redis_link import Commands

__all__ = ["Entry", "InProcessPresence", "PresenceStore", "RedisPresence"]

# (scope, user_id, sid)
Entry = tuple[str, str, str]

_SEP = "|"


def _member(entry: Entry) -> str:
    return _SEP.join(entry)


class PresenceStore(Protocol):
    async def add(self, entries: Sequence[Entry], expires_at: float) -> None:
        """Add or refresh entries (a refresh re-adds one that was swept)."""
        ...

    async def remove(self, entries: Sequence[Entry]) -> list[tuple[str, str]]:
        """Remove entries; the (scope, user) pairs that have no entry left."""
        ...

    async def users(self, scope: str) -> list[str]: ...

    async def count(self, scope: str, user_id: str) -> int:
        """How many entries the user has in the scope (sockets, for ``online``)."""
        ...

    async def present(self, scope: str, user_ids: Iterable[str]) -> set[str]: ...

    async def sweep(self, now: float) -> list[tuple[str, str]]:
        """Drop entries expired at ``now``; the (scope, user) pairs left empty."""
        ...


class InProcessPresence:
    def __init__(self) -> None:
        self._expiry: dict[Entry, float] = {}
        self._counts: dict[str, Counter[str]] = {}

    async def add(self, entries: Sequence[Entry], expires_at: float) -> None:
        for entry in entries:
            if entry not in self._expiry:
                scope, user, _ = entry
                self._counts.setdefault(scope, Counter())[user] += 1
            self._expiry[entry] = expires_at

    def _drop(self, entry: Entry) -> bool:
        if self._expiry.pop(entry, None) is None:
            return False
        scope, user, _ = entry
        counts = self._counts[scope]
        counts[user] -= 1
        if counts[user] > 0:
            return False
        del counts[user]
        if not counts:
            del self._counts[scope]
        return True

    async def remove(self, entries: Sequence[Entry]) -> list[tuple[str, str]]:
        return [(e[0], e[1]) for e in entries if self._drop(e)]

    async def users(self, scope: str) -> list[str]:
        return list(self._counts.get(scope, ()))

    async def count(self, scope: str, user_id: str) -> int:
        return self._counts.get(scope, Counter()).get(user_id, 0)

    async def present(self, scope: str, user_ids: Iterable[str]) -> set[str]:
        counts = self._counts.get(scope, Counter())
        return {u for u in user_ids if u in counts}

    async def sweep(self, now: float) -> list[tuple[str, str]]:
        expired = [e for e, at in self._expiry.items() if at <= now]
        return [(e[0], e[1]) for e in expired if self._drop(e)]


_ADD = """
for i = 2, #ARGV do
  if redis.call('ZADD', KEYS[1], ARGV[1], ARGV[i]) == 1 then
    local a = string.find(ARGV[i], '|', 1, true)
    local b = string.find(ARGV[i], '|', a + 1, true)
    local key = KEYS[2] .. string.sub(ARGV[i], 1, a - 1)
    redis.call('HINCRBY', key, string.sub(ARGV[i], a + 1, b - 1), 1)
  end
end
return 0
"""

# Shared by remove and sweep: drop members, report (scope, user) pairs left empty.
_DROP = """
local function drop(member, gone)
  if redis.call('ZREM', KEYS[1], member) == 0 then return end
  local a = string.find(member, '|', 1, true)
  local b = string.find(member, '|', a + 1, true)
  local key = KEYS[2] .. string.sub(member, 1, a - 1)
  local user = string.sub(member, a + 1, b - 1)
  if redis.call('HINCRBY', key, user, -1) <= 0 then
    redis.call('HDEL', key, user)
    table.insert(gone, string.sub(member, 1, b - 1))
  end
end
"""

_REMOVE = (
    _DROP
    + """
local gone = {}
for i = 1, #ARGV do drop(ARGV[i], gone) end
return gone
"""
)

_SWEEP = (
    _DROP
    + """
local gone = {}
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 1000)
for _, member in ipairs(expired) do drop(member, gone) end
return gone
"""
)


def _pairs(raw: list[bytes]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for item in raw:
        scope, _, user = item.decode().partition(_SEP)
        out.append((scope, user))
    return out


class RedisPresence:
    """Entries in one sorted set scored by expiry; a hash of counts per scope."""

    def __init__(self, redis: Commands, *, prefix: str) -> None:
        self._redis = redis
        self._keys = [prefix + "{presence}:entries", prefix + "{presence}:scope:"]
        self._scope_prefix = prefix + "{presence}:scope:"
        self._add = redis.register_script(_ADD)
        self._remove = redis.register_script(_REMOVE)
        self._sweep = redis.register_script(_SWEEP)

    async def add(self, entries: Sequence[Entry], expires_at: float) -> None:
        for start in range(0, len(entries), 500):
            batch = [_member(e) for e in entries[start : start + 500]]
            await self._add(keys=self._keys, args=[expires_at, *batch])

    async def remove(self, entries: Sequence[Entry]) -> list[tuple[str, str]]:
        if not entries:
            return []
        raw = await self._remove(keys=self._keys, args=[_member(e) for e in entries])
        return _pairs(raw)

    async def users(self, scope: str) -> list[str]:
        raw = await self._redis.hkeys(self._scope_prefix + scope)
        return [u.decode() if isinstance(u, bytes) else u for u in raw]

    async def count(self, scope: str, user_id: str) -> int:
        raw = await self._redis.hget(self._scope_prefix + scope, user_id)
        return int(raw) if raw is not None else 0

    async def present(self, scope: str, user_ids: Iterable[str]) -> set[str]:
        wanted = list(user_ids)
        if not wanted:
            return set()
        counts = await self._redis.hmget(self._scope_prefix + scope, wanted)
        return {u for u, c in zip(wanted, counts, strict=True) if c is not None}

    async def sweep(self, now: float) -> list[tuple[str, str]]:
        raw = await self._sweep(keys=self._keys, args=[now])
        return _pairs(raw)
