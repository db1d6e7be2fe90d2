"""The composition root: ``create_app(settings)`` builds and wires everything.

Nothing is built at import time. Every resource with a lifetime is a
``cleanup_ctx`` generator: acquire, yield, then release in reverse order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import orjson
import socketio
from aiohttp import web
from argon2 import PasswordHasher
from argon2 import Type as Argon2Type
from prometheus_client import Counter
from redis.asyncio import Redis

from handlers import auth as auth_routes
from handlers import dashboard as dashboard_routes
from handlers import notifications as notification_routes
from handlers import ops as ops_routes
from handlers import projects as project_routes
from handlers import publish as publish_routes
from handlers import rooms as room_routes
from handlers import sos as sos_routes
from handlers.middleware import lifeline_middleware
from integrations.fcm import FcmPush
from integrations.jwks import JwksVerifier
from integrations.kafka import KafkaBridge
from integrations.smtp_email import SmtpEmail
from integrations.twilio_sms import TwilioSms
from realtime import chat as chat_events
from realtime import live as live_events
from realtime import sos as sos_events
from realtime.doors import SocketDoor
from realtime.fanout import Fanout
from realtime.manager import IndexedManager
from realtime.servers import SocketServers
from realtime.sessions import SocketSessions
from realtime.transport import without_ws_compression
from server.keys import NODE, Node, Services
from server.metrics import Metrics
from server.settings import Settings
from services.abuse import AbuseLimits, ConnectionPolicy, EventBudget
from services.auth import AuthService, LoginThrottle
from services.chat import ChatLimits, ChatService
from services.clock import Clock, SystemClock
from services.delivery import Channel, DeliveryWorker, NotConfigured, PushOutbox
from services.donations import TickerService
from services.events import EventService
from services.notifications import NotificationService
from services.ops import OpsService
from services.presence import PresenceService
from services.publish import PublishService
from services.sos import SosRules, SosService
from storage.bus import NoPeers, PeerBus, RedisPeerBus
from storage.contacts import ContactRepository
from storage.crypto import FieldCipher
from storage.db import Database, apply_migrations, create_pool
from storage.deliveries import DeliveryRepository
from storage.events import Outbox
from storage.messages import MessageRepository
from storage.nodes import InProcessNodes, RedisNodes
from storage.notifications import NotificationRepository
from storage.presence import InProcessPresence, PresenceStore, RedisPresence
from storage.projects import ProjectRepository
from storage.rooms import RoomRepository
from storage.sos import SosRepository
from storage.state import EphemeralState, InProcessState, RedisState, ResilientState
from storage.tokens import TokenRepository
from storage.users import UserRepository

__all__ = ["SOCKETIO", "create_app"]

log = logging.getLogger(__name__)

SOCKETIO = web.AppKey("socketio", socketio.AsyncServer)
_DOOR = web.AppKey("socket_door", SocketDoor)
_SERVERS = web.AppKey("socket_servers", SocketServers)
_SESSIONS = web.AppKey("socket_sessions", SocketSessions)


class _Json:
    """orjson behind the ``json`` interface python-socketio expects."""

    @staticmethod
    def dumps(obj: Any, **_: Any) -> str:
        try:
            return orjson.dumps(obj).decode()
        except TypeError:  # integers beyond 64 bits, which JSON allows
            return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)

    @staticmethod
    def loads(text: str | bytes, **_: Any) -> Any:
        return orjson.loads(text)


def create_app(settings: Settings, *, clock: Clock | None = None) -> web.Application:
    if not settings.database_url:
        raise ValueError("create_app needs settings.database_url (the CLI starts an embedded one)")
    if not settings.auth.jwt_secret:
        raise ValueError("create_app needs settings.auth.jwt_secret")
    if not settings.data_keys:
        raise ValueError("create_app needs settings.data_keys (the CLI keeps one in development)")
    limit = settings.limits.max_payload_bytes
    middlewares = [lifeline_middleware]
    if not settings.ws_compression:
        middlewares.append(without_ws_compression)
    app = web.Application(middlewares=middlewares, client_max_size=limit)
    node = Node(settings=settings, clock=clock or SystemClock(), metrics=Metrics())
    app[NODE] = node

    options: dict[str, Any] = dict(
        async_mode="aiohttp",
        # None: python-engineio accepts only the node's own origin (and clients that send
        # none, as native apps do); a list adds origins; "*" opens it to every site.
        cors_allowed_origins=_cors(settings.cors_origins),
        max_http_buffer_size=limit,
        ping_interval=20,
        ping_timeout=20,
        logger=False,
        engineio_logger=False,
    )
    sio = socketio.AsyncServer(json=_Json, client_manager=IndexedManager(), **options)
    servers = SocketServers(sio)
    if settings.msgpack_path:
        # socket.io-msgpack-parser clients connect on their own path.
        servers.msgpack = socketio.AsyncServer(
            serializer="msgpack", client_manager=IndexedManager(), **options
        )
        servers.msgpack.attach(app, socketio_path=settings.msgpack_path)
    sio.attach(app, socketio_path="socket.io")
    sessions = SocketSessions()
    door = SocketDoor(
        servers,
        sessions=sessions,
        metrics=node.metrics,
        auth=node.require_auth,
        budget=EventBudget(_abuse_limits(settings), node.clock.monotonic),
    )
    app[SOCKETIO] = sio
    app[_SERVERS] = servers
    app[_DOOR] = door
    app[_SESSIONS] = sessions

    app.add_routes(ops_routes.routes)
    app.add_routes(auth_routes.routes)
    app.add_routes(publish_routes.routes)
    app.add_routes(room_routes.routes)
    app.add_routes(sos_routes.routes)
    app.add_routes(notification_routes.routes)
    app.add_routes(project_routes.routes)
    app.add_routes(dashboard_routes.routes)

    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(_shared_state)
    app.cleanup_ctx.append(_services)
    app.on_shutdown.append(_drain)
    return app


async def _database(app: web.Application) -> AsyncIterator[None]:
    node = app[NODE]
    settings = node.settings
    assert settings.database_url is not None
    pool = await create_pool(
        settings.database_url, min_size=settings.db_pool_min, max_size=settings.db_pool_max
    )
    applied = await apply_migrations(pool)
    if applied:
        log.info("schema migrated", extra={"versions": str(applied)})
    node.pool = pool
    yield
    node.pool = None
    await pool.close()


async def _shared_state(app: web.Application) -> AsyncIterator[None]:
    node = app[NODE]
    settings = node.settings
    redis: Redis | None = None
    state: EphemeralState
    bus: PeerBus
    if settings.redis_url:
        redis = Redis.from_url(
            settings.redis_url, socket_connect_timeout=2, socket_timeout=5, health_check_interval=10
        )
        await redis.ping()
        state = ResilientState(
            RedisState(redis, prefix=settings.redis_prefix),
            InProcessState(node.clock),
            on_fallback=lambda op: node.metrics.bus_errors.labels("state-" + op).inc(),
        )
        bus = RedisPeerBus(
            redis,
            prefix=settings.redis_prefix,
            node_id=settings.node_id,
            on_error=lambda kind: node.metrics.bus_errors.labels(kind).inc(),
        )
    else:
        state = InProcessState(node.clock)
        bus = NoPeers()
    node.redis, node.state, node.bus = redis, state, bus
    yield
    await bus.stop()
    if redis is not None:
        await redis.aclose()


async def _services(app: web.Application) -> AsyncIterator[None]:
    node = app[NODE]
    settings = node.settings
    pool = node.require_pool()
    assert node.state is not None and node.bus is not None
    fanout = Fanout(
        app[_SERVERS],
        node.bus,
        app[_SESSIONS],
        node.metrics,
        max_buffered_bytes=settings.limits.socket_buffer_max_bytes,
    )
    cipher = FieldCipher(dict(settings.data_keys))
    http = aiohttp.ClientSession()
    auth_settings = settings.auth
    external = (
        JwksVerifier(
            auth_settings.jwks_url,
            issuer=auth_settings.jwks_issuer,
            audience=auth_settings.jwks_audience,
            session=http,
        )
        if auth_settings.jwks_url
        else None
    )
    auth = AuthService(
        users=UserRepository(pool, cipher=cipher),
        tokens=TokenRepository(pool),
        state=node.state,
        throttle=LoginThrottle(
            node.state,
            free_failures=auth_settings.login_free_failures,
            lockout_failures=auth_settings.login_lockout_failures,
            lockout_s=auth_settings.login_lockout_s,
            window_s=auth_settings.login_window_s,
        ),
        sessions=fanout,
        clock=node.clock,
        secret=auth_settings.jwt_secret,
        issuer=auth_settings.issuer,
        access_ttl_s=auth_settings.access_ttl_s,
        refresh_ttl_s=auth_settings.refresh_ttl_s,
        hasher=PasswordHasher(
            time_cost=auth_settings.argon2_time_cost,
            memory_cost=auth_settings.argon2_memory_kib,
            parallelism=1,
            type=Argon2Type.ID,
        ),
        external=external,
        admin_emails=frozenset(auth_settings.admin_emails),
    )
    if not settings.cluster:
        await auth.load_revocations()
    presence_store: PresenceStore = (
        RedisPresence(node.redis, prefix=settings.redis_prefix)
        if node.redis is not None
        else InProcessPresence()
    )
    presence = PresenceService(
        presence_store,
        fanout,
        clock=node.clock,
        ttl_s=settings.limits.presence_ttl_s,
        on_error=lambda kind: node.metrics.bus_errors.labels(kind).inc(),
    )
    deliveries = DeliveryRepository(pool, cipher=cipher)
    notification_repo = NotificationRepository(pool, cipher=cipher)
    channels, close_channels = _channels(settings, notification_repo)
    worker = DeliveryWorker(
        deliveries,
        channels,
        clock=node.clock,
        on_outcome=lambda channel, status: node.metrics.deliveries.labels(channel, status).inc(),
    )
    kafka_on = settings.kafka_bootstrap_servers is not None
    outbox = Outbox(pool, topic=settings.kafka.out_topic, enabled=kafka_on)
    db = Database(pool)
    limits = settings.limits
    chat = ChatService(
        rooms=RoomRepository(pool),
        messages=MessageRepository(pool, outbox=outbox),
        presence=presence,
        fanout=fanout,
        sockets=fanout,
        push=PushOutbox(deliveries, node.clock, source="chat", kick=worker.kick),
        state=node.state,
        clock=node.clock,
        limits=ChatLimits(
            send_per_window=limits.chat_send_per_window, send_window_s=limits.chat_send_window_s
        ),
    )
    sos_settings = settings.sos
    sos = SosService(
        contacts=ContactRepository(pool, cipher=cipher),
        alerts=SosRepository(pool, outbox=outbox, cipher=cipher, deliveries=deliveries),
        users=UserRepository(pool, cipher=cipher),
        deliveries=deliveries,
        presence=presence,
        fanout=fanout,
        clock=node.clock,
        rules=SosRules(
            max_contacts=sos_settings.max_contacts,
            escalate_after_s=sos_settings.escalate_after_s,
            escalation_levels=sos_settings.escalation_levels,
            expire_after_s=sos_settings.expire_after_s,
            scheduler_interval_s=sos_settings.scheduler_interval_s,
        ),
        kick_deliveries=worker.kick,
        on_escalated=lambda level: node.metrics.sos_escalations.labels(str(level)).inc(),
    )
    notifications = NotificationService(
        db=db,
        repo=notification_repo,
        deliveries=deliveries,
        outbox=outbox,
        fanout=fanout,
        clock=node.clock,
        kick_deliveries=worker.kick,
    )
    projects = ProjectRepository(pool)
    events = EventService(
        db=db,
        projects=projects,
        users=UserRepository(pool, cipher=cipher),
        notifications=notifications,
        fanout=fanout,
        clock=node.clock,
    )
    tickers = TickerService(projects, fanout)
    door = app[_DOOR]
    metrics = node.metrics
    ops = OpsService(
        node_id=settings.node_id,
        nodes=RedisNodes(node.redis, prefix=settings.redis_prefix)
        if node.redis is not None
        else InProcessNodes(node.clock),
        users=UserRepository(pool, cipher=cipher),
        alerts=SosRepository(pool, outbox=outbox, cipher=cipher, deliveries=deliveries),
        deliveries=deliveries,
        clock=node.clock,
        socket_count=lambda: door.socket_count,
        events_total=lambda: _total(metrics.events_in) + _total(metrics.events_out),
    )
    door.guard(ConnectionPolicy(node.state, presence, _abuse_limits(settings)))
    chat_events.register(door, chat, presence)
    sos_events.register(door, sos)
    live_events.register(door, tickers, notifications)
    node.built = Services(
        auth=auth,
        publisher=PublishService(fanout),
        presence=presence,
        chat=chat,
        sos=sos,
        deliveries=worker,
        notifications=notifications,
        events=events,
        tickers=tickers,
        ops=ops,
    )
    await node.bus.start()
    tasks = [
        asyncio.create_task(presence.run(), name="presence-upkeep"),
        asyncio.create_task(worker.run(), name="deliveries"),
        asyncio.create_task(sos.run(), name="sos-scheduler"),
        asyncio.create_task(ops.run(), name="node-figures"),
        asyncio.create_task(
            door.cut_slow_readers(settings.limits.socket_queue_max), name="slow-readers"
        ),
    ]
    if settings.kafka_bootstrap_servers:
        bridge = KafkaBridge(
            bootstrap=settings.kafka_bootstrap_servers,
            group_id=settings.kafka.group_id,
            topics=list(settings.kafka.topics),
            out_topic=settings.kafka.out_topic,
            events=events,
            outbox=outbox,
            metrics=node.metrics,
            create_topics=settings.kafka.create_topics,
        )
        node.readiness["kafka"] = bridge.ready
        tasks.append(asyncio.create_task(bridge.run(), name="kafka"))
    yield
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await presence.stop()
    await close_channels()
    for server in app[_SERVERS].all:
        await server.shutdown()
    await http.close()


def _cors(origins: tuple[str, ...]) -> str | list[str] | None:
    if "*" in origins:
        return "*"
    return list(origins) or None


def _abuse_limits(settings: Settings) -> AbuseLimits:
    limits = settings.limits
    return AbuseLimits(
        connections_per_address=limits.connections_per_address,
        connection_window_s=limits.connection_window_s,
        sockets_per_user=limits.sockets_per_user,
        events_per_s=limits.socket_events_per_s,
        event_burst=limits.socket_event_burst,
    )


def _total(counter: Counter) -> float:
    return sum(s.value for m in counter.collect() for s in m.samples if s.name.endswith("_total"))


def _channels(
    settings: Settings, notifications: NotificationRepository
) -> tuple[dict[str, Channel], Callable[[], Awaitable[None]]]:
    """SMS, push and email channels; one without credentials records "not configured"."""
    providers = settings.providers
    channels: dict[str, Channel] = {
        "sms": NotConfigured(),
        "push": NotConfigured(),
        "email": NotConfigured(),
    }
    sms: TwilioSms | None = None
    push: FcmPush | None = None
    if providers.sms:
        assert providers.twilio_account_sid and providers.twilio_auth_token
        assert providers.twilio_from
        sms = TwilioSms(
            account_sid=providers.twilio_account_sid,
            auth_token=providers.twilio_auth_token,
            from_number=providers.twilio_from,
            base_url=providers.twilio_base_url,
        )
        channels["sms"] = sms
    if providers.fcm_credentials_file:
        push = FcmPush(
            credentials_file=providers.fcm_credentials_file,
            project_id=providers.fcm_project_id,
            base_url=providers.fcm_base_url,
            tokens=notifications.push_tokens,
            forget=notifications.remove_tokens,
        )
        channels["push"] = push
    if providers.smtp_host:
        channels["email"] = SmtpEmail(
            host=providers.smtp_host,
            port=providers.smtp_port,
            sender=providers.smtp_from,
            username=providers.smtp_username,
            password=providers.smtp_password,
            start_tls=providers.smtp_tls,
        )

    async def close() -> None:
        if sms is not None:
            await sms.close()
        if push is not None:
            await push.close()

    return channels, close


async def _drain(app: web.Application) -> None:
    """Graceful shutdown: finish what is in flight, then tell clients to reconnect."""
    await app[_DOOR].drain(app[NODE].settings.shutdown_timeout_s / 2)
