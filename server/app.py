"""The composition root: ``create_app(settings)`` builds and wires everything.

Nothing is built at import time. Every resource with a lifetime is a
``cleanup_ctx`` generator: acquire, yield, then release in reverse order.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.metadata
import logging
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import aiohttp
import orjson
import socketio
from aiohttp import web
from argon2 import PasswordHasher
from argon2 import Type as Argon2Type
from prometheus_client import Counter, Gauge
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from handlers import auth as auth_routes
from handlers import dashboard as dashboard_routes
from handlers import docs as docs_routes
from handlers import notifications as notification_routes
from handlers import ops as ops_routes
from handlers import projects as project_routes
from handlers import publish as publish_routes
from handlers import rooms as room_routes
from handlers import sos as sos_routes
from handlers import uploads as upload_routes
from handlers import webhooks as webhook_routes
from handlers.common import RestDoor
from handlers.dashboard import content_security_policy
from handlers.docs import ApiDocuments
from handlers.middleware import lifeline_middleware
from handlers.openapi import openapi_document
from integrations.fcm import FcmPush, UrgentPush
from integrations.jwks import JwksVerifier
from integrations.kafka import KafkaBridge
from integrations.smtp_email import SmtpEmail
from integrations.twilio_sms import TwilioSignature, TwilioSms
from realtime import account as account_events
from realtime import chat as chat_events
from realtime import live as live_events
from realtime import sos as sos_events
from realtime.asyncapi import asyncapi_document
from realtime.codec import SocketJson
from realtime.doors import SocketDoor
from realtime.expiry import TokenExpiry
from realtime.fanout import Fanout
from realtime.interest import Interest
from realtime.manager import IndexedManager
from realtime.membership import RoomMembers
from realtime.seam import SocketServer, engine_of
from realtime.servers import SocketServers
from realtime.sessions import SocketSessions
from server.settings import Settings
from services.abuse import AbuseLimits, ConnectionPolicy, EventBudget
from services.accounts import AccountRules, AccountService
from services.addresses import ClientAddresses
from services.archive import ArchiveMover
from services.attachments import AttachmentRules, AttachmentService
from services.auth import AuthService, LoginThrottle
from services.channels import Channel, ChannelRegistry, NotConfigured, by_email, by_phone, by_user
from services.chat import ChatLimits, ChatService
from services.clock import Clock, SystemClock
from services.delivery import DeliveryWorker
from services.donations import TickerService
from services.events import EventService
from services.metrics import Metrics
from services.notifications import NotificationService
from services.ops import OpsService
from services.presence import PresenceService
from services.publish import PublishService
from services.sos import RECEIPT as SOS_RECEIPT
from services.sos import SosRules, SosService
from storage.archive import MongoArchive, NoArchive
from storage.bus import NoPeers, PeerBus, RedisPeerBus
from storage.codes import CodeRepository
from storage.contacts import ContactRepository
from storage.crypto import FieldCipher
from storage.db import Database, apply_migrations, new_pool
from storage.deliveries import DeliveryRepository
from storage.events import Outbox
from storage.messages import MessageRepository
from storage.nodes import InProcessNodes, RedisNodes
from storage.notifications import NotificationRepository
from storage.objects import FolderObjects, S3Objects
from storage.presence import InProcessPresence, PresenceStore, RedisPresence
from storage.projects import ProjectRepository
from storage.redis_link import connect_redis
from storage.rooms import RoomRepository
from storage.sos import SosRepository
from storage.state import EphemeralState, InProcessState, RedisState, ResilientState
from storage.tokens import TokenRepository
from storage.uploads import UploadRepository
from storage.users import UserRepository

__all__ = ["API_DOCUMENTS", "SOCKETIO", "create_app"]

log = logging.getLogger(__name__)

SOCKETIO = web.AppKey("socketio", socketio.AsyncServer)
API_DOCUMENTS = web.AppKey("api_documents", ApiDocuments)


def create_app(
    settings: Settings, *, clock: Clock | None = None, extra_channels: tuple[Channel, ...] = ()
) -> web.Application:
    """Build a node whole: every store, service, door and route, each once.

    Called inside the event loop that will run it (``web.run_app`` takes the
    coroutine that calls this). Nothing connects here; ``_lifetime`` opens
    the pools, migrates, starts the background work and closes it all again.
    """
    if not settings.database_url:
        raise ValueError("create_app needs settings.database_url (the CLI starts an embedded one)")
    if not settings.auth.jwt_secret:
        raise ValueError("create_app needs settings.auth.jwt_secret")
    if not settings.data_keys:
        raise ValueError("create_app needs settings.data_keys (the CLI keeps one in development)")
    clock = clock or SystemClock()
    metrics = Metrics()
    limits = settings.limits
    middlewares = [
        lifeline_middleware(metrics, csp=content_security_policy(settings.map_tiles_url))
    ]
    app = web.Application(middlewares=middlewares, client_max_size=limits.max_payload_bytes)

    # -- stores: built here, connected at startup ---------------------------------------------
    pool = new_pool(
        settings.database_url, min_size=settings.db_pool_min, max_size=settings.db_pool_max
    )
    redis: Redis | RedisCluster | None = None
    state: EphemeralState
    bus: PeerBus
    if settings.redis_url:
        link = connect_redis(settings.redis_url)
        redis = link.client
        state = ResilientState(
            RedisState(redis, prefix=settings.redis_prefix),
            InProcessState(clock),
            on_fallback=lambda op: metrics.bus_errors.labels("state-" + op).inc(),
        )
        # Resolved once: the bus counts every message it hears.
        heard = {k: metrics.bus_messages.labels(k) for k in ("interest", "node-wide", "own")}
        bus = RedisPeerBus(
            link,
            prefix=settings.redis_prefix,
            node_id=settings.node_id,
            on_error=lambda kind: metrics.bus_errors.labels(kind).inc(),
            on_received=lambda kind: heard[kind].inc(),
            broadcast=settings.bus_routing == "broadcast",
        )
    else:
        state = InProcessState(clock)
        bus = NoPeers()
    cipher = FieldCipher(dict(settings.data_keys))
    db = Database(pool)
    kafka_on = settings.kafka_bootstrap_servers is not None
    outbox = Outbox(topic=settings.kafka.out_topic, enabled=kafka_on)
    users = UserRepository(pool, cipher=cipher)
    deliveries = DeliveryRepository(pool, cipher=cipher)
    notification_repo = NotificationRepository(pool, cipher=cipher)
    alerts = SosRepository(pool, cipher=cipher)
    projects = ProjectRepository(pool)

    # -- Socket.IO ------------------------------------------------------------------------------
    options: dict[str, Any] = dict(
        async_mode="aiohttp",
        # None: the engine accepts only the node's own origin (and clients that send
        # none, as native apps do); a list adds origins; "*" opens it to every site.
        cors_allowed_origins=_cors(settings.cors_origins),
        max_http_buffer_size=limits.max_payload_bytes,
        # Every namespace reaches the door, which refuses the unknown ones as v5 wants.
        namespaces="*",
        ping_interval=limits.ping_interval_s,
        ping_timeout=limits.ping_timeout_s,
        logger=False,
        engineio_logger=False,
    )
    interest = Interest(bus)
    metrics.bus_channels.set_function(lambda: bus.channel_count)
    sio = SocketServer(json=SocketJson, client_manager=IndexedManager(interest), **options)
    servers = SocketServers(sio, interest=interest)
    if settings.msgpack_path:
        # socket.io-msgpack-parser clients connect on their own path.
        servers.msgpack = SocketServer(
            serializer="msgpack", client_manager=IndexedManager(interest), **options
        )
        servers.msgpack.attach(app, socketio_path=settings.msgpack_path)
    sio.attach(app, socketio_path="socket.io")
    for server in servers.all:
        engine = engine_of(server)
        engine.max_queued = limits.socket_queue_max
        engine.max_buffered = limits.socket_buffer_max_bytes
        engine.on_cut = metrics.connections_refused.labels("slow_reader").inc
    sessions = SocketSessions()
    fanout = Fanout(servers, bus, sessions, metrics)

    # -- the domain -----------------------------------------------------------------------------
    auth_settings = settings.auth
    # Only what calls out needs a client session (and a node without one holds none).
    http = aiohttp.ClientSession() if auth_settings.jwks_url else None
    external = (
        JwksVerifier(
            auth_settings.jwks_url,
            issuer=auth_settings.jwks_issuer,
            audience=auth_settings.jwks_audience,
            session=http,
        )
        if auth_settings.jwks_url and http is not None
        else None
    )
    auth = AuthService(
        db=db,
        users=users,
        tokens=TokenRepository(pool),
        state=state,
        throttle=LoginThrottle(
            state,
            free_failures=auth_settings.login_free_failures,
            lockout_failures=auth_settings.login_lockout_failures,
            lockout_s=auth_settings.login_lockout_s,
            window_s=auth_settings.login_window_s,
        ),
        sessions=fanout,
        clock=clock,
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
    presence_store: PresenceStore = (
        RedisPresence(redis, prefix=settings.redis_prefix)
        if redis is not None
        else InProcessPresence()
    )
    presence = PresenceService(
        presence_store,
        fanout,
        clock=clock,
        ttl_s=limits.presence_ttl_s,
        on_error=lambda kind: metrics.bus_errors.labels(kind).inc(),
    )
    channels = _channels(settings, db, notification_repo, extra_channels)
    worker = DeliveryWorker(
        db,
        deliveries,
        channels,
        clock=clock,
        on_outcome=lambda channel, status: metrics.deliveries.labels(channel, status).inc(),
    )
    archive_settings = settings.archive
    archive: MongoArchive | NoArchive = (
        MongoArchive(
            archive_settings.mongodb_url,
            database=archive_settings.database,
            retention_days=archive_settings.retention_days,
        )
        if archive_settings.mongodb_url
        else NoArchive()
    )
    upload_settings = settings.uploads
    store: FolderObjects | S3Objects
    if upload_settings.s3_bucket:
        store = S3Objects(
            bucket=upload_settings.s3_bucket,
            prefix=upload_settings.s3_prefix,
            endpoint_url=upload_settings.s3_endpoint_url,
            region=upload_settings.s3_region,
        )
    else:
        store = FolderObjects(
            settings.uploads_dir,
            secret=settings.auth.jwt_secret,
            public_url=upload_settings.public_url,
        )
    attachments = AttachmentService(
        db=db,
        uploads=UploadRepository(pool),
        store=store,
        clock=clock,
        rules=AttachmentRules(max_bytes=upload_settings.max_bytes, types=upload_settings.types),
    )
    chat = ChatService(
        db=db,
        rooms=RoomRepository(pool),
        messages=MessageRepository(pool),
        deliveries=deliveries,
        outbox=outbox,
        presence=presence,
        fanout=fanout,
        sockets=fanout,
        attachments=attachments,
        archive=archive,
        kick_deliveries=worker.kick,
        state=state,
        clock=clock,
        limits=ChatLimits(
            send_per_window=limits.chat_send_per_window, send_window_s=limits.chat_send_window_s
        ),
    )
    # Each node's room sockets follow the members, by version (realtime/membership.py).
    fanout.guard_rooms(
        RoomMembers(servers, sessions, load=chat.members_version, evicted=chat.leave).ensure
    )
    sos_settings = settings.sos
    sos = SosService(
        db=db,
        contacts=ContactRepository(pool, cipher=cipher),
        alerts=alerts,
        users=users,
        deliveries=deliveries,
        outbox=outbox,
        presence=presence,
        fanout=fanout,
        clock=clock,
        rules=SosRules(
            max_contacts=sos_settings.max_contacts,
            escalate_after_s=sos_settings.escalate_after_s,
            escalation_levels=sos_settings.escalation_levels,
            expire_after_s=sos_settings.expire_after_s,
            scheduler_interval_s=sos_settings.scheduler_interval_s,
            socket_ack_s=sos_settings.socket_ack_s,
        ),
        kick_deliveries=worker.kick,
        on_escalated=lambda level: metrics.sos_escalations.labels(str(level)).inc(),
    )
    fanout.on_receipt(SOS_RECEIPT, sos.socket_acked)
    worker.follow("sos", sos.delivery_finished)
    notifications = NotificationService(
        db=db,
        repo=notification_repo,
        deliveries=deliveries,
        outbox=outbox,
        channels=channels,
        archive=archive,
        fanout=fanout,
        clock=clock,
        kick_deliveries=worker.kick,
    )
    events = EventService(
        db=db,
        projects=projects,
        users=users,
        notifications=notifications,
        blocks=auth,
        fanout=fanout,
        clock=clock,
        on_after_commit_error=lambda type_: metrics.errors.labels("internal", "after-commit").inc(),
    )
    tickers = TickerService(projects, fanout, clock)
    addresses = ClientAddresses(auth_settings.trusted_proxies)
    expiry = TokenExpiry(sessions, fanout, clock, warn_s=auth_settings.expiring_notice_s)
    door = SocketDoor(
        servers,
        sessions=sessions,
        metrics=metrics,
        auth=auth,
        budget=EventBudget(_abuse_limits(settings), clock.monotonic),
        policy=ConnectionPolicy(state, presence, _abuse_limits(settings)),
        expiry=expiry,
        addresses=addresses,
    )
    accounts = AccountService(
        db=db,
        auth=auth,
        users=users,
        codes=CodeRepository(),
        deliveries=deliveries,
        state=state,
        clock=clock,
        secret=auth_settings.jwt_secret,
        rules=AccountRules(),
        kick_deliveries=worker.kick,
    )
    ops = OpsService(
        node_id=settings.node_id,
        nodes=RedisNodes(redis, prefix=settings.redis_prefix)
        if redis is not None
        else InProcessNodes(clock),
        users=users,
        alerts=alerts,
        deliveries=deliveries,
        clock=clock,
        socket_count=lambda: door.socket_count,
        events_total=lambda: _total(metrics.events_in) + _total(metrics.events_out),
        kafka_lag=lambda: _sum(metrics.kafka_lag) if bridge is not None else None,
    )
    bridge = (
        KafkaBridge(
            bootstrap=settings.kafka_bootstrap_servers,
            group_id=settings.kafka.group_id,
            topics=list(settings.kafka.topics),
            out_topic=settings.kafka.out_topic,
            events=events,
            outbox=outbox,
            db=db,
            metrics=metrics,
            create_topics=settings.kafka.create_topics,
        )
        if settings.kafka_bootstrap_servers
        else None
    )

    # -- doors ----------------------------------------------------------------------------------
    account_events.register(door, auth)
    chat_events.register(door, chat, presence)
    sos_events.register(door, sos)
    live_events.register(door, tickers, notifications)
    rest = RestDoor(
        auth=auth,
        api_key=settings.api_key,
        max_payload_bytes=limits.max_payload_bytes,
        addresses=addresses,
    )

    async def readiness() -> dict[str, str]:
        checks: dict[str, str] = {}

        async def check(name: str, probe: Awaitable[Any]) -> None:
            try:
                await asyncio.wait_for(probe, timeout=2.0)
                checks[name] = "ok"
            except Exception:
                checks[name] = "down"

        await check("postgres", pool.fetchval("SELECT 1"))
        if redis is not None:
            await check("redis", redis.ping())
            checks["redis_pubsub"] = "ok" if bus.healthy else "down"
        if bridge is not None:
            checks["kafka"] = "ok" if bridge.ready() else "down"
        if isinstance(archive, MongoArchive):
            await check("mongodb", archive.ping())
        return checks

    dashboard_pages, dashboard_api = dashboard_routes.routes(
        rest, ops, map_tiles=(settings.map_tiles_url, settings.map_attribution)
    )
    documents = ApiDocuments()
    docs_api, docs_pages = docs_routes.routes(documents)
    apis = (
        ops_routes.routes(node_id=settings.node_id, readiness=readiness, metrics=metrics),
        auth_routes.routes(rest, auth, accounts),
        publish_routes.routes(rest, PublishService(fanout)),
        room_routes.routes(rest, chat),
        sos_routes.routes(rest, sos),
        notification_routes.routes(rest, notifications, events),
        project_routes.routes(tickers),
        dashboard_api,
        upload_routes.routes(
            rest,
            attachments,
            folder=store if isinstance(store, FolderObjects) else None,
            clock=clock,
        ),
        webhook_routes.routes(
            worker,
            signature=TwilioSignature(settings.providers.twilio_auth_token).valid
            if settings.providers.sms and settings.providers.twilio_auth_token
            else None,
            public_url=settings.providers.twilio_status_url,
        ),
        docs_api,
    )
    for api in apis:
        app.add_routes(api.table)
    app.add_routes(dashboard_pages)
    app.add_routes(docs_pages)
    # Described from the declarations the doors validate with, once, as served.
    version = _version()
    documents.openapi = orjson.dumps(
        openapi_document(
            [op for api in apis for op in api.operations],
            version=version,
            server_url=upload_settings.public_url or None,
            event_types=events.types,
            channel_names=channels.names,
            upload_types=upload_settings.types,
            upload_max_bytes=upload_settings.max_bytes,
        )
    )
    documents.asyncapi = orjson.dumps(asyncapi_document(door.catalog, version=version))
    app[SOCKETIO] = sio
    app[API_DOCUMENTS] = documents

    # -- lifetime -------------------------------------------------------------------------------
    async def lifetime(_: web.Application) -> AsyncIterator[None]:
        await pool  # connects the pool built above
        try:
            applied = await apply_migrations(pool)
            if applied:
                log.info("schema migrated", extra={"versions": str(applied)})
            if redis is not None:
                await redis.ping()
            if not settings.cluster:
                await auth.load_revocations()
            await bus.start()
            if isinstance(store, S3Objects):
                await store.start()
            if isinstance(archive, MongoArchive):
                await archive.prepare()
            tasks = [
                asyncio.create_task(presence.run(), name="presence-upkeep"),
                asyncio.create_task(worker.run(), name="deliveries"),
                asyncio.create_task(sos.run(), name="sos-scheduler"),
                asyncio.create_task(ops.run(), name="node-figures"),
                asyncio.create_task(expiry.run(), name="token-expiry"),
                asyncio.create_task(
                    attachments.run(every_s=upload_settings.sweep_every_s), name="upload-sweeper"
                ),
                asyncio.create_task(
                    door.close_unconnected(limits.connect_timeout_s), name="connect-timeout"
                ),
            ]
            if bridge is not None:
                tasks.append(asyncio.create_task(bridge.run(), name="kafka"))
            if isinstance(archive, MongoArchive):
                mover = archive_mover(db, archive, settings, clock, metrics)
                tasks.append(
                    asyncio.create_task(mover.run(archive_settings.every_s), name="archive")
                )
            yield
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await presence.stop()
            await channels.close()
            for server in servers.all:
                await server.shutdown()
        finally:
            await bus.stop()
            await store.close()
            if isinstance(archive, MongoArchive):
                await archive.close()
            if redis is not None:
                await redis.aclose()
            if http is not None:
                await http.close()
            await pool.close()

    async def drain(_: web.Application) -> None:
        """Graceful shutdown: finish what is in flight, then tell clients to reconnect."""
        await door.drain(settings.shutdown_timeout_s / 2)

    app.cleanup_ctx.append(lifetime)
    app.on_shutdown.append(drain)
    return app


def archive_mover(
    db: Database, archive: MongoArchive, settings: Settings, clock: Clock, metrics: Metrics
) -> ArchiveMover:
    """The archive tier's mover (for the node, and for ``lifeline archive --now``)."""

    def moved(table: str, rows: int, size: int) -> None:
        metrics.archive_moved.labels(table).inc(rows)
        metrics.archive_bytes.labels(table).inc(size)

    return ArchiveMover(
        db=db,
        archive=archive,
        clock=clock,
        hot_days=settings.archive.hot_days,
        batch=settings.archive.batch,
        on_moved=moved,
        on_lag=lambda table, s: metrics.archive_lag.labels(table).set(s),
    )


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


def _version() -> str:
    try:
        return importlib.metadata.version("lifeline")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout, not installed
        return "0+unknown"


def _sum(gauge: Gauge) -> float:
    return sum(s.value for m in gauge.collect() for s in m.samples)


def _total(counter: Counter) -> float:
    return sum(s.value for m in counter.collect() for s in m.samples if s.name.endswith("_total"))


def _channels(
    settings: Settings,
    db: Database,
    notifications: NotificationRepository,
    extra: tuple[Channel, ...],
) -> ChannelRegistry:
    """Every channel that reaches people outside the app, registered here and only here.

    A channel without provider credentials records "skipped: not configured".
    """
    providers = settings.providers
    registry = ChannelRegistry()
    if providers.fcm_credentials_file:
        registry.register(
            FcmPush(
                credentials_file=providers.fcm_credentials_file,
                project_id=providers.fcm_project_id,
                base_url=providers.fcm_base_url,
                tokens=notifications.push_tokens,
                # Tokens FCM says will never work again; one statement is its own unit.
                forget=functools.partial(notifications.remove_tokens, db),
                urgent=UrgentPush(
                    android_channel_id=settings.sos.android_channel_id,
                    critical=settings.sos.critical_alerts,
                    ttl_s=settings.sos.expire_after_s,
                ),
            )
        )
    else:
        registry.register(NotConfigured("push", by_user))
    if providers.sms:
        assert providers.twilio_account_sid and providers.twilio_auth_token
        assert providers.twilio_from
        registry.register(
            TwilioSms(
                account_sid=providers.twilio_account_sid,
                auth_token=providers.twilio_auth_token,
                from_number=providers.twilio_from,
                base_url=providers.twilio_base_url,
                status_url=providers.twilio_status_url,
            )
        )
    else:
        registry.register(NotConfigured("sms", by_phone))
    if providers.smtp_host:
        registry.register(
            SmtpEmail(
                host=providers.smtp_host,
                port=providers.smtp_port,
                sender=providers.smtp_from,
                username=providers.smtp_username,
                password=providers.smtp_password,
                start_tls=providers.smtp_tls,
            )
        )
    else:
        registry.register(NotConfigured("email", by_email))
    for channel in extra:
        registry.register(channel)
    return registry
