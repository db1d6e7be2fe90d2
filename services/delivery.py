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
from collections.abc import Callable

from services.channels import ChannelRegistry, DeliveryOutcome
from services.clock import Clock
from storage.deliveries import Delivery, DeliveryRepository

__all__ = ["DeliveryWorker"]

log = logging.getLogger(__name__)


class DeliveryWorker:
    def __init__(
        self,
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
        claimed = await self._repo.claim(
            now=self._clock.now(), lease_s=self._lease_s, limit=self._batch
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
                await self._repo.retry_at(delivery.id, at=now + delay, result=outcome.detail)
                self._on_outcome(delivery.channel, "retry")
                return
            outcome = DeliveryOutcome(
                "failed", f"gave up after {delivery.attempts}: {outcome.detail}"
            )
        await self._repo.finish(delivery.id, status=outcome.status, result=outcome.detail, now=now)
        self._on_outcome(delivery.channel, outcome.status)
