"""Socket.IO namespaces as doors: authenticate, parse, call one service, ack.

``SocketDoor`` wraps every event handler so that whatever a client sends, it
gets the contract's flat ack and the socket stays up: bad payloads are
``invalid``, store outages ``unavailable``, bugs ``internal`` (logged).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import socketio

from realtime import rooms
from realtime.acks import error_ack, ok_ack
from realtime.catalog import ClientEvent, EventCatalog
from realtime.codec import UNPARSEABLE
from realtime.expiry import TokenExpiry
from realtime.seam import engine_of
from realtime.servers import SocketServers
from realtime.sessions import SocketSession, SocketSessions
from services.abuse import ConnectionPolicy, EventBudget
from services.addresses import ClientAddresses
from services.auth import AuthService, Identity
from services.errors import Internal, Invalid, RateLimited, Unauthorized, Unavailable
from services.metrics import Metrics
from services.wire.base import Reply, Request, parse
from storage.errors import as_app_error

__all__ = ["AnonymousHandler", "Handler", "SocketDoor"]

log = logging.getLogger(__name__)

M = TypeVar("M", bound=Request)
Handler = Callable[[SocketSession, M], Awaitable[dict[str, Any] | None]]
AnonymousHandler = Callable[[str, M], Awaitable[dict[str, Any] | None]]
Hook = Callable[[SocketSession], Awaitable[None]]
_Call = Callable[[SocketSession | None, Any], Awaitable[dict[str, Any] | None]]


class SocketDoor:
    def __init__(
        self,
        servers: SocketServers,
        *,
        sessions: SocketSessions,
        metrics: Metrics,
        auth: AuthService,
        budget: EventBudget | None = None,
        policy: ConnectionPolicy | None = None,
        expiry: TokenExpiry | None = None,
        addresses: ClientAddresses | None = None,
        catalog: EventCatalog | None = None,
    ) -> None:
        self.catalog = catalog or EventCatalog()
        self._expiry = expiry
        self._addresses = addresses or ClientAddresses()
        self._servers = servers
        self._sessions = sessions
        self._metrics = metrics
        self._auth = auth
        self._connect_hooks: list[Hook] = []
        self._after_connect_hooks: list[Hook] = []
        self._background: set[asyncio.Task[None]] = set()
        self._disconnect_hooks: list[Hook] = []
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._draining = False
        self._live_sids: set[str] = set()
        self._budget = budget
        self._policy = policy
        for server in servers.all:
            self._attach(server)
            engine_of(server).on_open(self._admit)

    def _attach(self, server: socketio.AsyncServer) -> None:
        async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> bool:
            self._servers.bind(sid, server)
            return await self._connect(sid, environ, auth)

        async def connect_live(sid: str, environ: dict[str, Any], auth: Any = None) -> bool:
            self._servers.bind(sid, server)
            return await self._connect_live(sid, environ, auth)

        async def unknown(event: str, sid: str, *args: Any) -> Any:
            self._metrics.unknown_events.labels(rooms.MAIN).inc()
            return server.not_handled

        async def unknown_live(event: str, sid: str, *args: Any) -> Any:
            self._metrics.unknown_events.labels(rooms.LIVE).inc()
            return server.not_handled

        server.on("connect", connect, namespace=rooms.MAIN)
        server.on("disconnect", self._disconnect, namespace=rooms.MAIN)
        server.on("*", unknown, namespace=rooms.MAIN)

        async def refuse_namespace(namespace: str, sid: str, *args: Any) -> bool:
            # Socket.IO v5 wants CONNECT_ERROR data as an object; python-socketio's own
            # answer for a namespace nobody serves is a bare string.
            self._metrics.connections_refused.labels("not_found").inc()
            raise socketio.exceptions.ConnectionRefusedError("not_found")

        server.on("connect", connect_live, namespace=rooms.LIVE)
        server.on("connect", refuse_namespace, namespace="*")
        server.on("disconnect", self._disconnect_live, namespace=rooms.LIVE)
        server.on("*", unknown_live, namespace=rooms.LIVE)

    @property
    def socket_count(self) -> int:
        return len(self._sessions) + len(self._live_sids)

    # -- registration -----------------------------------------------------------------------

    def on(
        self,
        event: str,
        handler: Handler[M],
        *,
        payload: type[M],
        ack: type[Reply],
        summary: str,
    ) -> None:
        """An event on ``/`` from an authenticated socket: its payload is parsed as
        ``payload`` (a failure is the ``invalid`` ack) and described in the catalog."""
        self.catalog.add(ClientEvent(rooms.MAIN, event, payload, ack, summary))
        for server in self._servers.all:
            self._on(server, event, handler, payload)

    def _on(
        self, server: socketio.AsyncServer, event: str, handler: Handler[M], model: type[M]
    ) -> None:
        async def dispatch(sid: str, *args: Any) -> dict[str, Any]:
            return await self._dispatch(event, sid, args, handler, model)

        server.on(event, dispatch, namespace=rooms.MAIN)

    def on_live(
        self,
        event: str,
        handler: AnonymousHandler[M],
        *,
        payload: type[M],
        ack: type[Reply],
        summary: str,
    ) -> None:
        """An event on the public ``/live`` namespace."""
        self.catalog.add(ClientEvent(rooms.LIVE, event, payload, ack, summary))
        for server in self._servers.all:
            self._on_live(server, event, handler, payload)

    def _on_live(
        self,
        server: socketio.AsyncServer,
        event: str,
        handler: AnonymousHandler[M],
        model: type[M],
    ) -> None:
        async def dispatch(sid: str, *args: Any) -> dict[str, Any]:
            async def call(_: SocketSession | None, payload: M) -> dict[str, Any] | None:
                return await handler(sid, payload)

            return await self._run(event, None, args, call, model, sid=sid, namespace=rooms.LIVE)

        server.on(event, dispatch, namespace=rooms.LIVE)

    def on_connect(self, hook: Hook) -> None:
        """Runs once an authenticated socket is connected; a failure refuses it."""
        self._connect_hooks.append(hook)

    def reauthenticate(self, sid: str, identity: Identity) -> None:
        """The socket goes on under a fresh token of the same user (``auth:refresh``)."""
        session = self._sessions.reauthenticate(sid, identity)
        if session is not None and self._expiry is not None:
            self._expiry.watch(session)

    def after_connect(self, hook: Hook) -> None:
        """Runs once the socket's CONNECT has gone out, so what it emits arrives after it
        (Socket.IO v5 clients expect no event of a namespace before its CONNECT)."""
        self._after_connect_hooks.append(hook)

    def on_disconnect(self, hook: Hook) -> None:
        self._disconnect_hooks.append(hook)

    # -- lifecycle --------------------------------------------------------------------------

    async def drain(self, timeout_s: float) -> None:
        """Refuse new events, wait for the ones in flight, then drop every transport.

        The transport is dropped without an Engine.IO CLOSE packet: clients (the JS
        and the python one alike) take a lost transport as a reason to reconnect, to
        another node behind the load balancer, while a CLOSE or a Socket.IO
        DISCONNECT would make them stay disconnected.
        """
        self._draining = True
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            log.warning("drain timed out", extra={"in_flight": self._in_flight})
        for server in self._servers.all:
            engine_of(server).drop_all()

    async def close_unconnected(self, timeout_s: float) -> None:
        """Close Engine.IO sessions that have not connected a namespace within
        ``timeout_s`` of their first request, until cancelled.

        A session that completed its handshake and answers pings, but never connects
        a namespace, would be a free way to hold a node's memory. Node's socket.io
        closes such a session after 45 s (``connectTimeout``); so does Lifeline
        (``LIFELINE_CONNECT_TIMEOUT_S``). Swept every quarter of the timeout (at most
        5 s). A WebSocket gets the close packet,
        then a close frame; a polling session's next request is refused (400).
        """
        every_s = min(max(timeout_s / 4, 0.05), 5.0)
        while True:
            await asyncio.sleep(every_s)
            deadline = time.monotonic() - timeout_s
            for server in self._servers.all:
                manager = server.manager
                namespaces = list(manager.rooms)
                engine = engine_of(server)
                for eio_sid, opened_at in engine.sessions():
                    if opened_at > deadline:
                        continue
                    if any(manager.sid_from_eio_sid(eio_sid, ns) for ns in namespaces):
                        continue
                    self._metrics.connections_refused.labels("connect_timeout").inc()
                    engine.close(eio_sid)

    # -- connection -------------------------------------------------------------------------

    async def _admit(self, environ: dict[str, Any]) -> None:
        """Charge a new Engine.IO session to its address's connection budget, at its
        first request, whether or not it goes on to connect a namespace. A refusal is
        kept for the namespace's CONNECT, which answers it as the contract's
        ``connect_error`` (``rate_limited``); the sessions of one address over its
        budget are closed by the connect timeout if they never try."""
        if self._policy is None:
            return
        try:
            await self._policy.admit_address(self._address(environ))
        except Exception as exc:
            environ[_REFUSED] = exc

    async def _connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> bool:
        if self._draining:
            raise socketio.exceptions.ConnectionRefusedError("unavailable")
        token = auth.get("token") if isinstance(auth, dict) else None
        service = self._auth
        address = self._address(environ)
        try:
            _admitted(environ)
            identity = await service.authenticate(token)
            if self._policy is not None:
                await self._policy.admit_user(identity.user_id)
            session = SocketSession(sid=sid, identity=identity, address=address)
            self._sessions.add(session)
            # A logout that raced this connect must not leave its socket behind.
            if await service.is_revoked(identity):
                self._sessions.remove(sid)
                raise Unauthorized()
        except Unauthorized:
            self._sessions.remove(sid)
            self._metrics.connections_refused.labels("unauthorized").inc()
            raise socketio.exceptions.ConnectionRefusedError("unauthorized") from None
        except Exception as exc:
            self._sessions.remove(sid)
            error = as_app_error(exc)
            self._metrics.connections_refused.labels(error.code).inc()
            if isinstance(error, Internal):
                log.exception("connect failed")
            raise socketio.exceptions.ConnectionRefusedError(error.code) from None
        await self._servers.enter(sid, rooms.user(identity.user_id), namespace=rooms.MAIN)
        if self._expiry is not None:
            self._expiry.watch(session)
        self._metrics.sockets.labels(rooms.MAIN).inc()
        try:
            for hook in self._connect_hooks:
                await hook(session)
        except Exception as exc:
            await self._disconnect(sid)
            error = as_app_error(exc)
            self._metrics.connections_refused.labels(error.code).inc()
            log.warning("connect hook failed", exc_info=True)
            raise socketio.exceptions.ConnectionRefusedError(error.code) from None
        if self._after_connect_hooks:
            # Scheduled now, run after python-socketio queues the CONNECT packet.
            task = asyncio.get_running_loop().create_task(self._run_after_connect(session))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        return True

    async def _run_after_connect(self, session: SocketSession) -> None:
        for hook in self._after_connect_hooks:
            try:
                await hook(session)
            except Exception:
                log.warning("after-connect hook failed", exc_info=True)

    async def _disconnect(self, sid: str, reason: Any = None) -> None:
        if self._budget is not None:
            self._budget.forget(sid)
        session = self._sessions.remove(sid)
        try:
            if session is None:
                return
            self._metrics.sockets.labels(rooms.MAIN).dec()
            for hook in self._disconnect_hooks:
                try:
                    await hook(session)
                except Exception:
                    log.exception("disconnect hook failed")
        finally:
            self._servers.forget(sid)

    async def _connect_live(self, sid: str, environ: dict[str, Any], auth: Any = None) -> bool:
        if self._draining:
            raise socketio.exceptions.ConnectionRefusedError("unavailable")
        if environ.get(_REFUSED) is not None:
            try:
                _admitted(environ)
            except Exception as exc:
                error = as_app_error(exc)
                self._metrics.connections_refused.labels(error.code).inc()
                raise socketio.exceptions.ConnectionRefusedError(error.code) from None
        self._live_sids.add(sid)
        self._metrics.sockets.labels(rooms.LIVE).inc()
        return True

    async def _disconnect_live(self, sid: str, reason: Any = None) -> None:
        if self._budget is not None:
            self._budget.forget(sid)
        if sid in self._live_sids:
            self._live_sids.discard(sid)
            self._metrics.sockets.labels(rooms.LIVE).dec()
        self._servers.forget(sid)

    # -- events -----------------------------------------------------------------------------

    async def _dispatch(
        self, event: str, sid: str, args: tuple[Any, ...], handler: Handler[M], model: type[M]
    ) -> dict[str, Any]:
        session = self._sessions.get(sid)

        async def call(_: SocketSession | None, payload: M) -> dict[str, Any] | None:
            if session is None:
                raise Unauthorized()
            if self._expiry is not None and self._expiry.expired(session):
                raise Unauthorized("the access token expired; refresh it and connect again")
            return await handler(session, payload)

        return await self._run(event, session, args, call, model, sid=sid, namespace=rooms.MAIN)

    async def _run(
        self,
        event: str,
        session: SocketSession | None,
        args: tuple[Any, ...],
        call: _Call,
        model: type[Request],
        *,
        sid: str,
        namespace: str,
    ) -> dict[str, Any]:
        started = time.perf_counter()
        self._metrics.child(self._metrics.events_in, event).inc()
        if not self._servers.connected(sid, namespace):
            # Queued behind its own disconnect (a flood cut off, a client gone
            # mid-burst): nobody hears the ack, and nothing is done for it.
            return error_ack(Unavailable("this socket is disconnected"))
        if self._budget is not None:
            verdict = self._budget.spend(sid)
            if verdict is not True:
                self._metrics.errors.labels("rate_limited", "socket").inc()
                if verdict is None:
                    log.warning("disconnecting a socket that keeps flooding", extra={"sid": sid})
                    asyncio.get_running_loop().create_task(
                        self._servers.of(sid).disconnect(sid, namespace=namespace)
                    )
                return error_ack(RateLimited("too many events from this socket; slow down"))
        self._in_flight += 1
        self._idle.clear()
        try:
            if self._draining:
                raise Unavailable("this node is shutting down; reconnect")
            if args and args[0] is UNPARSEABLE:
                raise Invalid("the payload is not JSON this server reads (or nested too deep)")
            payload = parse(model, args[0] if args else None)
            ack = ok_ack(await call(session, payload))
        except Exception as exc:
            error = as_app_error(exc)
            if isinstance(error, Internal):
                log.exception("event handler failed", extra={"event": event})
            self._metrics.errors.labels(error.code, "socket").inc()
            ack = error_ack(error)
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()
        latency = self._metrics.child(self._metrics.ack_latency, event)
        latency.observe(time.perf_counter() - started)
        return ack

    def _address(self, environ: dict[str, Any]) -> str:
        """The client's address: the TCP peer, or behind a trusted proxy its
        ``X-Forwarded-For`` hop."""
        return self._addresses.client(
            environ.get("REMOTE_ADDR"), environ.get("HTTP_X_FORWARDED_FOR")
        )


_REFUSED = "lifeline.refused"  # in a session's environ: why its address was refused


def _admitted(environ: dict[str, Any]) -> None:
    """Raise what refused the session's address at its first request, if anything."""
    refused = environ.get(_REFUSED)
    if refused is not None:
        raise refused
