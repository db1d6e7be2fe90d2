"""The archive tier of history on MongoDB (PyMongo's asyncio API).

Documents are keyed by their PostgreSQL ids and written with upserts, so a
copy repeated after a mover died part-way neither loses nor duplicates
anything. Reads mirror the hot tier's: a room's messages by seq, a user's
notifications by time. Notification texts and data stay as they are in
PostgreSQL (fields sealed there are sealed here, with the same data keys).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, ReplaceOne

__all__ = ["History", "MongoArchive", "NoArchive"]


class MongoArchive:
    enabled = True

    def __init__(self, url: str, *, database: str, retention_days: float | None) -> None:
        self._client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            url, serverSelectionTimeoutMS=5000, tz_aware=True
        )
        self._db = self._client[database]
        self._retention_days = retention_days

    async def prepare(self) -> None:
        """The indexes reads need, and the retention the settings ask for (a TTL index)."""
        messages, notifications = self._db["messages"], self._db["notifications"]
        await messages.create_index([("room_id", ASCENDING), ("seq", ASCENDING)], unique=True)
        await notifications.create_index([("user_id", ASCENDING), ("created_at", DESCENDING)])
        await self._db["deliveries"].create_index([("source", ASCENDING), ("source_id", ASCENDING)])
        if self._retention_days is not None:
            seconds = int(self._retention_days * 86400)
            for name in ("messages", "notifications", "deliveries"):
                await self._db[name].create_index(
                    [("archived_at", ASCENDING)], expireAfterSeconds=seconds
                )

    async def ping(self) -> None:
        await self._db.command("ping")

    async def close(self) -> None:
        await self._client.close()

    # -- writes ------------------------------------------------------------------------------

    async def put(self, collection: str, documents: list[dict[str, Any]]) -> int:
        """Upsert by ``_id``; then how many of them the archive holds (the verification)."""
        if not documents:
            return 0
        now = datetime.now(UTC)
        await self._db[collection].bulk_write(
            [
                ReplaceOne({"_id": d["_id"]}, {**d, "archived_at": now}, upsert=True)
                for d in documents
            ],
            ordered=False,
        )
        return await self._db[collection].count_documents(
            {"_id": {"$in": [d["_id"] for d in documents]}}
        )

    # -- reads ------------------------------------------------------------------------------

    async def messages_before(
        self, room_id: str, *, before_seq: int | None, from_seq: int, limit: int
    ) -> list[dict[str, Any]]:
        """Newest first, from_seq <= seq < before_seq, as history shows them."""
        seq: dict[str, Any] = {"$gte": from_seq}
        if before_seq is not None:
            seq["$lt"] = before_seq
        cursor = (
            self._db["messages"]
            .find({"room_id": room_id, "seq": seq, "kind": {"$nin": ["edit", "delete"]}})
            .sort("seq", DESCENDING)
            .limit(limit)
        )
        return await cursor.to_list()

    async def messages_between(
        self, room_id: str, *, after_seq: int, before_seq: int | None, limit: int
    ) -> list[dict[str, Any]]:
        """Oldest first, after_seq < seq < before_seq (every event, as sync carries them)."""
        seq: dict[str, Any] = {"$gt": after_seq}
        if before_seq is not None:
            seq["$lt"] = before_seq
        cursor = (
            self._db["messages"].find({"room_id": room_id, "seq": seq}).sort("seq", ASCENDING)
        ).limit(limit)
        return await cursor.to_list()

    async def notifications_before(
        self, user_id: str, *, before: datetime | None, unread_only: bool, limit: int
    ) -> list[dict[str, Any]]:
        query: dict[str, Any] = {"user_id": user_id}
        if before is not None:
            query["created_at"] = {"$lt": before}
        if unread_only:
            query["read_at"] = None
        cursor = (
            self._db["notifications"]
            .find(query)
            .sort([("created_at", DESCENDING), ("_id", ASCENDING)])
            .limit(limit)
        )
        return await cursor.to_list()

    async def count(self, collection: str) -> int:
        return await self._db[collection].count_documents({})


class NoArchive:
    """No second tier (``MONGODB_URL`` unset): every read finds nothing older."""

    enabled = False

    async def messages_before(
        self, room_id: str, *, before_seq: int | None, from_seq: int, limit: int
    ) -> list[dict[str, Any]]:
        return []

    async def messages_between(
        self, room_id: str, *, after_seq: int, before_seq: int | None, limit: int
    ) -> list[dict[str, Any]]:
        return []

    async def notifications_before(
        self, user_id: str, *, before: datetime | None, unread_only: bool, limit: int
    ) -> list[dict[str, Any]]:
        return []


History = MongoArchive | NoArchive
