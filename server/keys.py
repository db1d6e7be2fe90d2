"""Typed keys for what the composition root keeps on the aiohttp app."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import asyncpg
from aiohttp import web
from redis.asyncio import Redis

from server.metrics import Metrics
from server.settings import Settings
from services.auth import AuthService
from services.chat import ChatService
from services.clock import Clock
from services.delivery import DeliveryWorker
from services.donations import TickerService
from services.events import EventService
from services.notifications import NotificationService
from services.ops import OpsService
from services.presence import PresenceService
from services.publish import PublishService
from services.sos import SosService
from storage.bus import PeerBus
from storage.state import EphemeralState

__all__ = ["NODE", "Node", "Services"]


@dataclass(frozen=True, slots=True)
class Services:
    """The domain, built once the stores are up."""

    auth: AuthService
    publisher: PublishService
    presence: PresenceService
    chat: ChatService
    sos: SosService
    deliveries: DeliveryWorker
    notifications: NotificationService
    events: EventService
    tickers: TickerService
    ops: OpsService


@dataclass
class Node:
    """One running node; put on the app by create_app, filled in at startup."""

    settings: Settings
    clock: Clock
    metrics: Metrics
    pool: asyncpg.Pool | None = None
    redis: Redis | None = None
    state: EphemeralState | None = None
    bus: PeerBus | None = None
    built: Services | None = None
    # Extra readiness checks (name -> is it up?), e.g. Kafka.
    readiness: dict[str, Callable[[], bool]] = field(default_factory=dict)

    @property
    def services(self) -> Services:
        if self.built is None:
            raise RuntimeError("the node has not started")
        return self.built

    def require_auth(self) -> AuthService:
        return self.services.auth

    def require_pool(self) -> asyncpg.Pool:
        if self.pool is None:
            raise RuntimeError("the node has not started")
        return self.pool


NODE = web.AppKey("node", Node)
