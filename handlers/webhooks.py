"""Providers calling back: Twilio's message status callbacks (signature checked)."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from handlers.api import Api, Auth
from services.delivery import DeliveryWorker
from services.errors import Forbidden, Invalid, Unavailable

__all__ = ["routes"]

# (the URL Twilio called, the form it posted, X-Twilio-Signature) -> genuine?
SignatureCheck = Callable[[str, dict[str, str], str], bool]

_DELIVERED = frozenset({"delivered"})
_FAILED = frozenset({"failed", "undelivered"})


def routes(
    receipts: DeliveryWorker, *, signature: SignatureCheck | None, public_url: str | None
) -> Api:
    api = Api(None, tag="server API")

    @api.route(
        "POST",
        "/api/v1/webhooks/twilio",
        summary="Twilio's SMS status callback",
        description="Form-encoded, signed with X-Twilio-Signature; a delivered or failed SMS "
        "changes the SOS recipient's state. 503 on nodes without SMS.",
        auth=Auth.TWILIO,
        answers={204: None},
        errors=(400, 403),
        body_type="application/x-www-form-urlencoded",
    )
    async def twilio_status(request: web.Request) -> web.Response:
        if signature is None:
            raise Unavailable("SMS is not configured on this node")
        if request.content_type != "application/x-www-form-urlencoded":
            raise Invalid("Twilio posts its callbacks form-encoded")
        try:
            form = await request.post()
        except ValueError:
            raise Invalid("the callback's form does not parse") from None
        params = {k: str(v) for k, v in form.items()}
        # Twilio signs the URL it was given; behind a proxy that is the public one.
        url = public_url or str(request.url)
        if not signature(url, params, request.headers.get("X-Twilio-Signature", "")):
            raise Forbidden("the X-Twilio-Signature does not match")
        sid, status = params.get("MessageSid", ""), params.get("MessageStatus", "")
        if not sid or not status:
            raise Invalid("MessageSid and MessageStatus are required")
        if status in _DELIVERED or status in _FAILED:
            code = params.get("ErrorCode")
            detail = f"twilio {status}" + (f" ({code})" if code else "")
            await receipts.provider_receipt(sid, delivered=status in _DELIVERED, detail=detail)
        return web.Response(status=204)

    return api
