"""Request id, access metrics, and the one mapping of errors to the REST shape."""

from __future__ import annotations

import logging
import uuid

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from handlers.common import json_response
from handlers.dashboard import CSP
from services.errors import AppError, Internal, Invalid, MethodNotAllowed, NotFound, TooLarge
from services.metrics import Metrics
from services.tracing import request_id_var
from storage.errors import as_app_error

__all__ = ["error_response", "lifeline_middleware"]

log = logging.getLogger(__name__)

_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def error_response(error: AppError) -> web.Response:
    response = json_response({"error": error.body()}, status=error.status)
    retry_after = getattr(error, "retry_after", None)
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


def _from_http(exc: web.HTTPException) -> AppError:
    if exc.status == 404:
        return NotFound("no such path")
    if exc.status == 405:
        return MethodNotAllowed("method not allowed on this path")
    if exc.status == 413:
        return TooLarge()
    if 400 <= exc.status < 500:
        return Invalid(exc.reason)
    return Internal()


def lifeline_middleware(metrics: Metrics, *, csp: str = CSP) -> Middleware:
    """Request ids, access metrics, security headers and the contract's error shape on
    every answer."""
    security = {**_SECURITY_HEADERS, "Content-Security-Policy": csp}

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        request_id = request.headers.get("X-Request-Id", "")[:64] or uuid.uuid4().hex
        token = request_id_var.set(request_id)
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        error: AppError | None = None
        allowed: web.HTTPException | None = None
        try:
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                if exc.status < 400:
                    raise
                error = _from_http(exc)
                allowed = exc
            except AppError as exc:
                error = exc
            except Exception as exc:
                error = as_app_error(exc)
                if isinstance(error, Internal):
                    log.exception("request failed", extra={"route": route})
            if error is not None:
                metrics.errors.labels(error.code, "http").inc()
                response = error_response(error)
                if isinstance(allowed, web.HTTPMethodNotAllowed):
                    # RFC 9110: a 405 says which methods the path takes.
                    response.headers["Allow"] = ", ".join(sorted(allowed.allowed_methods))
            response.headers["X-Request-Id"] = request_id
            if not response.prepared:  # a WebSocket's answer went out long ago
                response.headers.update(security)
            metrics.http_requests.labels(route, request.method, str(response.status)).inc()
            return response
        finally:
            request_id_var.reset(token)

    return middleware
