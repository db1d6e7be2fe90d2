"""The mover of history's second tier: rows past the hot window go to MongoDB.

On every node (``LIFELINE_ARCHIVE_EVERY_S``) or at once (``lifeline archive
--now``): messages, notifications and finished deliveries older than
``LIFELINE_HOT_DAYS`` are copied to the archive in batches, checked there,
then deleted from PostgreSQL in the transaction that locked them. Reads
continue from the hot tier into the archive (services/chat.py,
services/notifications.py), so clients see one history.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import orjson

from services.clock import Clock
from services.errors import Unavailable
from storage.archive import MongoArchive
from storage.db import Database
from storage.hot_tier import HOT_TABLES, HotTier

__all__ = ["ArchiveMover"]

log = logging.getLogger(__name__)


class ArchiveMover:
    def __init__(
        self,
        *,
        db: Database,
        archive: MongoArchive,
        clock: Clock,
        hot_days: float,
        batch: int,
        on_moved: Callable[[str, int, int], None] = lambda table, rows, size: None,
        on_lag: Callable[[str, float], None] = lambda table, s: None,
    ) -> None:
        self._db = db
        self._archive = archive
        self._clock = clock
        self._hot_s = hot_days * 86400
        self._batch = batch
        self._on_moved = on_moved
        self._on_lag = on_lag

    async def run(self, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            try:
                while await self.move_once() > 0:
                    pass
            except Exception:
                log.warning("archive round failed; retrying", exc_info=True)

    async def move_once(self) -> int:
        """One batch of each table; how many rows moved."""
        before = self._clock.now() - self._hot_s
        moved = 0
        for table, (collection, _, _) in HOT_TABLES.items():
            async with self._db.transaction() as conn:
                documents = await HotTier.take_due(conn, table, before=before, limit=self._batch)
                if documents:
                    held = await self._archive.put(collection, documents)
                    if held != len(documents):  # rolls back: nothing leaves PostgreSQL
                        raise Unavailable(f"the archive holds {held} of {len(documents)} rows")
                    await HotTier.delete(conn, table, [d["_id"] for d in documents])
                lag = await HotTier.lag_s(conn, table, before=before)
            self._on_moved(table, len(documents), _size(documents))
            self._on_lag(table, lag)
            moved += len(documents)
        return moved


def _size(documents: list[dict[str, Any]]) -> int:
    """About what the rows weigh (their JSON), for the archive's metrics."""
    return sum(len(orjson.dumps(d, default=str)) for d in documents)
