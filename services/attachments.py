"""Attachments: announced, uploaded straight to object storage, checked, carried by a message.

An upload is checked before a message may carry it: the stored size must be
the declared one and its first bytes must match the declared type (a PNG
that starts like a PNG). Limits on size and types are settings; a violation
is ``too_large`` or ``invalid``. Members read attachments through short-lived
signed links; uploads no message carries are deleted after a day.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from services.clock import Clock, iso
from services.errors import Forbidden, Invalid, NotFound, TooLarge
from storage.db import Database, Queryable
from storage.objects import ObjectStore
from storage.uploads import UploadRecord, UploadRepository

__all__ = ["AttachmentRules", "AttachmentService", "looks_like"]

log = logging.getLogger(__name__)

MAX_PER_MESSAGE = 10

# How a type's content starts (offset, bytes).
_MAGIC: dict[str, tuple[tuple[int, bytes], ...]] = {
    "image/jpeg": ((0, b"\xff\xd8\xff"),),
    "image/png": ((0, b"\x89PNG\r\n\x1a\n"),),
    "image/gif": ((0, b"GIF87a"), (0, b"GIF89a")),
    "image/webp": ((8, b"WEBP"),),
    "application/pdf": ((0, b"%PDF-"),),
}


def looks_like(mime: str, first: bytes) -> bool:
    """Whether content that starts with ``first`` can be of type ``mime``."""
    if mime == "text/plain":
        return b"\x00" not in first
    signatures = _MAGIC.get(mime)
    if signatures is None:
        return True  # a type allowed by configuration without a known signature
    return any(first[at : at + len(sig)] == sig for at, sig in signatures)


@dataclass(frozen=True, slots=True)
class AttachmentRules:
    max_bytes: int = 25 * 1024 * 1024
    types: tuple[str, ...] = (
        "image/jpeg",
        "image/png",
        "image/gif",
        "image/webp",
        "application/pdf",
        "text/plain",
    )
    upload_window_s: float = 3600.0  # how long an upload URL works
    link_s: float = 900.0  # how long a member's download link works
    keep_unattached_s: float = 24 * 3600.0


class AttachmentService:
    def __init__(
        self,
        *,
        db: Database,
        uploads: UploadRepository,
        store: ObjectStore,
        clock: Clock,
        rules: AttachmentRules,
    ) -> None:
        self._db = db
        self._uploads = uploads
        self._store = store
        self._clock = clock
        self._rules = rules

    async def announce(self, user_id: str, *, name: str, mime: str, size: int) -> dict[str, Any]:
        """``POST /uploads``: where and how to send the bytes."""
        if size < 1:
            raise Invalid("size must be at least 1 byte")
        if size > self._rules.max_bytes:
            raise TooLarge(f"attachments are at most {self._rules.max_bytes} bytes")
        mime = mime.strip().lower()
        if mime not in self._rules.types:
            raise Invalid("mime must be one of " + ", ".join(self._rules.types))
        upload_id = str(uuid.uuid4())
        key = f"{user_id}/{upload_id}"
        now = self._clock.now()
        await self._uploads.create(
            self._db,
            upload_id=upload_id,
            owner_id=user_id,
            name=name,
            mime=mime,
            size=size,
            object_key=key,
            now=now,
        )
        expires_at = now + self._rules.upload_window_s
        target = await self._store.upload_target(
            key, upload_id=upload_id, mime=mime, size=size, expires_at=expires_at, now=now
        )
        return {"upload_id": upload_id, **target, "expires_at": iso(expires_at)}

    async def upload(self, upload_id: str) -> UploadRecord:
        """An announced upload (for the node's own upload URL), or NotFound."""
        found = await self._uploads.get(upload_id)
        if found is None:
            raise NotFound("no such upload")
        return found

    async def check(self, user_id: str, upload_ids: list[str]) -> list[str]:
        """The uploads a message of ``user_id`` may carry, in order, each complete."""
        if len(upload_ids) > MAX_PER_MESSAGE:
            raise Invalid(f"at most {MAX_PER_MESSAGE} attachments a message")
        wanted = list(dict.fromkeys(upload_ids))
        found = {u.id: u for u in await self._uploads.of_owner(user_id, wanted)}
        for upload_id in wanted:
            upload = found.get(upload_id)
            if upload is None:
                raise Forbidden(f"upload {upload_id} is not one of yours")
            if upload.message_id is not None:
                raise Invalid(f"upload {upload_id} is already attached to a message")
            stored = await self._store.stat(upload.object_key)
            if stored is None or stored[0] != upload.size:
                raise Invalid(f"upload {upload_id} is not complete")
            if not looks_like(upload.mime, stored[1]):
                raise Invalid(f"upload {upload_id} is not a {upload.mime}")
        return wanted

    @staticmethod
    async def attach(conn: Queryable, message_id: str, upload_ids: list[str]) -> None:
        """Inside the message's transaction: the message carries them, or neither commits."""
        if upload_ids and await UploadRepository.attach(conn, message_id, upload_ids) != len(
            upload_ids
        ):
            raise Invalid("an upload was attached to another message meanwhile")

    async def of_messages(self, message_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        """Each message's attachments with fresh signed links."""
        found = await self._uploads.of_messages(message_ids)
        return {m: [await self._link(u) for u in ups] for m, ups in found.items()}

    async def _link(self, upload: UploadRecord) -> dict[str, Any]:
        now = self._clock.now()
        url = await self._store.download_url(
            upload.object_key,
            upload_id=upload.id,
            name=upload.name,
            mime=upload.mime,
            expires_at=now + self._rules.link_s,
            now=now,
        )
        return upload.public(url)

    async def run(self, every_s: float = 600.0) -> None:
        """Delete uploads no message carried within a day, on any node, until cancelled."""
        while True:
            await asyncio.sleep(every_s)
            try:
                await self.sweep()
            except Exception:
                log.warning("sweeping unattached uploads failed; retrying", exc_info=True)

    async def sweep(self) -> int:
        before = self._clock.now() - self._rules.keep_unattached_s
        async with self._db.transaction() as conn:
            stale = await self._uploads.take_stale(conn, before=before, limit=500)
        for upload in stale:
            await self._store.delete(upload.object_key)
        return len(stale)
