"""The operator view: nodes, events per second, open SOS alerts, delivery results."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from services.clock import Clock
from services.errors import Forbidden
from storage.deliveries import DeliveryRepository
from storage.nodes import NodeDirectory
from storage.sos import SosRepository
from storage.users import UserRepository

__all__ = ["OpsService"]

OPEN_ALERTS = 200
TRAIL_POINTS = 300
# Delivery results by channel over this window.
DELIVERIES_S = 3600

log = logging.getLogger(__name__)


class OpsService:
    def __init__(
        self,
        *,
        node_id: str,
        nodes: NodeDirectory,
        users: UserRepository,
        alerts: SosRepository,
        deliveries: DeliveryRepository,
        clock: Clock,
        socket_count: Callable[[], int],
        events_total: Callable[[], float],
        kafka_lag: Callable[[], float | None] = lambda: None,
        report_every_s: float = 1.0,
    ) -> None:
        self._kafka_lag = kafka_lag
        self._node_id = node_id
        self._nodes = nodes
        self._users = users
        self._alerts = alerts
        self._deliveries = deliveries
        self._clock = clock
        self._socket_count = socket_count
        self._events_total = events_total
        self._every = report_every_s

    async def overview(self, user_id: str) -> dict[str, Any]:
        user = await self._users.by_id(user_id)
        if user is None or user.role != "admin":
            raise Forbidden("the operator view is for accounts with the role admin")
        alerts = await self._alerts.open_alerts(limit=OPEN_ALERTS)
        for alert in alerts:
            # Where each person went: the map draws the trail, newest points last.
            alert["trail"] = (await self._alerts.trail(alert["id"]))[-TRAIL_POINTS:]
        return {
            "nodes": await self._nodes.all(),
            "alerts": alerts,
            "deliveries": await self._deliveries.counts(since=self._clock.now() - DELIVERIES_S),
            "deliveries_since_s": DELIVERIES_S,
        }

    async def run(self) -> None:
        """Report this node's figures every second, until cancelled."""
        last_total, last_at = self._events_total(), self._clock.monotonic()
        while True:
            await asyncio.sleep(self._every)
            total, at = self._events_total(), self._clock.monotonic()
            rate = (total - last_total) / max(at - last_at, 1e-6)
            last_total, last_at = total, at
            try:
                await self._nodes.report(
                    self._node_id,
                    {
                        "sockets": self._socket_count(),
                        "events_per_s": round(rate, 2),
                        "kafka_lag": self._kafka_lag(),
                    },
                    ttl_s=self._every * 5,
                )
            except Exception:
                log.warning("reporting node figures failed", exc_info=True)
