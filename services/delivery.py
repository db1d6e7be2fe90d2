"""Delivery of what is owed by SMS, push and email, from the durable outbox.

Services write ``NewDelivery`` rows in the transaction of what caused them;
``DeliveryWorker`` (one per node) claims due rows with a lease, hands each to
its channel and records the outcome. Transient failures are retried with
growing delays up to a limit; permanent ones are recorded and left alone.
Channels come from the registry (services/channels.py); one without
credentials answers ``skipped: not configured``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from services.channels import ChannelRegistry, DeliveryOutcome
from services.clock import Clock
from storage.db import Database, Queryable
from storage.deliveries import Delivery, DeliveryRepository

__all__ = ["DeliveryWorker"]

log = logging.getLogger(__name__)

AfterCommit = Callable[[], Awaitable[None]]
# Writes what a delivery's final outcome owes inside the transaction that records
# it (an SMS when a push could not go out), and returns what to do after the commit.
Follower = Callable[[Queryable, Delivery, DeliveryOutcome], Awaitable[AfterCommit | None]]


class DeliveryWorker:
    def __init__(
        self,
        db: Database,
        repo: DeliveryRepository,
        channels: ChannelRegistry,
        *,
        clock: Clock,
        interval_s: float = 0.5,
        lease_s: float = 30.0,
        max_attempts: int = 5,
        backoff_s: float = 2.0,
        batch: int = 50,
        on_outcome: Callable[[str, str], None] = lambda channel, status: None,
    ) -> None:
        self._db = db
        self._repo = repo
        self._channels = channels
        self._clock = clock
        self._interval_s = interval_s
        self._lease_s = lease_s
        self._max_attempts = max_attempts
        self._backoff_s = backoff_s
        self._batch = batch
        self._on_outcome = on_outcome
        self._wake = asyncio.Event()
        self._followers: dict[str, Follower] = {}

    def follow(self, source: str, follower: Follower) -> None:
        """Tell ``follower`` the final outcome of every delivery of that source (SOS
        counts a contact reached when the provider accepted their push or SMS)."""
        self._followers[source] = follower

    async def provider_receipt(self, ref: str, *, delivered: bool, detail: str) -> bool:
        """What a provider later said of a message it accepted (a Twilio status
        callback); False when no sent delivery has that reference."""
        status = "delivered" if delivered else "failed"
        after: AfterCommit | None = None
        async with self._db.transaction() as conn:
            delivery = await self._repo.provider_receipt(conn, ref, status=status, result=detail)
            if delivery is None:
                return False
            follower = self._followers.get(delivery.source)
            if not delivered and follower is not None:
                after = await follower(conn, delivery, DeliveryOutcome("failed", detail, ref=ref))
        self._on_outcome(delivery.channel, status)
        if after is not None:
            await after()
        return True

    def kick(self) -> None:
        """Something was just enqueued: look now instead of at the next tick."""
        self._wake.set()

    async def run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval_s)
            self._wake.clear()
            try:
                while await self.run_once() == self._batch:
                    pass
            except Exception:
                log.warning("delivery round failed; retrying", exc_info=True)

    async def run_once(self) -> int:
        # One statement, its own unit of work: the lease is taken when it returns.
        claimed = await self._repo.claim(
            self._db, now=self._clock.now(), lease_s=self._lease_s, limit=self._batch
        )
        if claimed:
            await asyncio.gather(*(self._deliver(d) for d in claimed))
        return len(claimed)

    async def _deliver(self, delivery: Delivery) -> None:
        channel = self._channels.get(delivery.channel)
        try:
            outcome = (
                await channel.deliver(delivery)
                if channel is not None
                else DeliveryOutcome("failed", f"no channel {delivery.channel}")
            )
        except Exception as exc:  # a provider SDK failing in a way it does not document
            log.warning("delivery raised", exc_info=True, extra={"channel": delivery.channel})
            outcome = DeliveryOutcome("retry", f"{type(exc).__name__}")
        now = self._clock.now()
        if outcome.status == "retry":
            if delivery.attempts < self._max_attempts:
                delay = self._backoff_s * 2 ** (delivery.attempts - 1)
                await self._repo.retry_at(
                    self._db, delivery.id, at=now + delay, result=outcome.detail
                )
                self._on_outcome(delivery.channel, "retry")
                return
            outcome = DeliveryOutcome(
                "failed", f"gave up after {delivery.attempts}: {outcome.detail}"
            )
        follower = self._followers.get(delivery.source)
        after: AfterCommit | None = None
        async with self._db.transaction() as conn:
            finished = await self._repo.finish(
                conn,
                delivery.id,
                status=outcome.status,
                result=outcome.detail,
                now=now,
                ref=outcome.ref,
            )
            if finished and follower is not None:
                after = await follower(conn, delivery, outcome)
        self._on_outcome(delivery.channel, outcome.status)
        if after is not None:
            try:
                await after()
            except Exception:  # committed; telling sockets is best effort
                log.exception("after a delivery's outcome", extra={"id": delivery.id})
