"""Who each socket on this node is, indexed for disconnecting by token."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass

from services.auth import Identity

__all__ = ["SocketSession", "SocketSessions"]


@dataclass(slots=True)
class SocketSession:
    sid: str
    identity: Identity
    address: str

    @property
    def user_id(self) -> str:
        return self.identity.user_id


class SocketSessions:
    def __init__(self) -> None:
        self._by_sid: dict[str, SocketSession] = {}
        self._by_token: defaultdict[str, set[str]] = defaultdict(set)
        self._by_user: defaultdict[str, set[str]] = defaultdict(set)

    def __len__(self) -> int:
        return len(self._by_sid)

    def __iter__(self) -> Iterator[SocketSession]:
        return iter(list(self._by_sid.values()))

    def add(self, session: SocketSession) -> None:
        self._by_sid[session.sid] = session
        ident = session.identity
        self._by_token["jti:" + ident.jti].add(session.sid)
        if ident.family_id:
            self._by_token["fid:" + ident.family_id].add(session.sid)
        self._by_user[ident.user_id].add(session.sid)

    def get(self, sid: str) -> SocketSession | None:
        return self._by_sid.get(sid)

    def remove(self, sid: str) -> SocketSession | None:
        session = self._by_sid.pop(sid, None)
        if session is None:
            return None
        ident = session.identity
        keys = ["jti:" + ident.jti] + (["fid:" + ident.family_id] if ident.family_id else [])
        for key in keys:
            sids = self._by_token.get(key)
            if sids is not None:
                sids.discard(sid)
                if not sids:
                    del self._by_token[key]
        sids = self._by_user.get(ident.user_id)
        if sids is not None:
            sids.discard(sid)
            if not sids:
                del self._by_user[ident.user_id]
        return session

    def reauthenticate(self, sid: str, identity: Identity) -> SocketSession | None:
        """The socket goes on under a new token (``auth:refresh``), indexed by it."""
        session = self.remove(sid)
        if session is None:
            return None
        session.identity = identity
        self.add(session)
        return session

    def by_tokens(
        self, *, jti: str | None, family_id: str | None, user_id: str | None = None
    ) -> set[str]:
        found: set[str] = set()
        if user_id:
            found |= self._by_user.get(user_id, set())
        if jti:
            found |= self._by_token.get("jti:" + jti, set())
        if family_id:
            found |= self._by_token.get("fid:" + family_id, set())
        return found
