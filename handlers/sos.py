"""REST doors of SOS: emergency contacts and an alert with its trail and audit."""

from __future__ import annotations

from aiohttp import web

from handlers.common import RestDoor, json_response, query_int
from services.sos import SosService

__all__ = ["routes"]


def routes(door: RestDoor, sos: SosService) -> web.RouteTableDef:
    table = web.RouteTableDef()

    @table.post("/api/v1/contacts")
    async def add_contact(request: web.Request) -> web.Response:
        identity = await door.identity(request)
        body = await door.body(request)
        contact = await sos.add_contact(
            identity.user_id,
            user_id=body.opt_identifier("user_id"),
            phone=body.opt_string("phone", min_len=1, max_len=32),
            name=body.string("name", max_len=100, strip=True),
        )
        return json_response({"contact": contact.public()}, status=201)

    @table.get("/api/v1/contacts")
    async def list_contacts(request: web.Request) -> web.Response:
        identity = await door.identity(request)
        contacts = await sos.contacts(identity.user_id)
        return json_response({"contacts": [c.public() for c in contacts]})

    @table.delete("/api/v1/contacts/{contact_id}")
    async def delete_contact(request: web.Request) -> web.Response:
        identity = await door.identity(request)
        await sos.delete_contact(identity.user_id, request.match_info["contact_id"])
        return web.Response(status=204)

    @table.get("/api/v1/sos")
    async def alerts(request: web.Request) -> web.Response:
        identity = await door.identity(request)
        found = await sos.alerts_of(
            identity.user_id,
            status=request.query.get("status") or "open",
            limit=query_int(request, "limit", minimum=1),
        )
        return json_response({"alerts": found})

    @table.get("/api/v1/sos/{alert_id}")
    async def alert(request: web.Request) -> web.Response:
        identity = await door.identity(request)
        details = await sos.details(identity.user_id, request.match_info["alert_id"])
        return json_response(details)

    return table
