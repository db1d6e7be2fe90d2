"""Which failures of our stores mean "try again" rather than "bug"."""

from __future__ import annotations

import asyncpg

from services.errors import AppError, Internal, Unavailable
from storage.redis_link import REDIS_UNREACHABLE

__all__ = ["as_app_error"]

_TRANSIENT: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.QueryCanceledError,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.DeadlockDetectedError,
    # What asyncpg raises on a connection whose backend was terminated mid-query;
    # we never share a connection between tasks, so it means "connection lost".
    asyncpg.exceptions.InternalClientError,
    *REDIS_UNREACHABLE,
    ConnectionError,
    TimeoutError,
    OSError,
)


def as_app_error(exc: BaseException) -> AppError:
    if isinstance(exc, AppError):
        return exc
    if isinstance(exc, _TRANSIENT):
        return Unavailable()
    return Internal()
