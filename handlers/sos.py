"""REST doors of SOS: emergency contacts, the caller's alerts, and one alert in full."""

from __future__ import annotations

from aiohttp import web

from handlers.api import Api, Auth
from handlers.common import RestDoor, json_response
from services.sos import SosService
from services.wire import rest

__all__ = ["routes"]


def routes(door: RestDoor, sos: SosService) -> Api:
    api = Api(door, tag="sos")

    @api.route(
        "POST",
        "/api/v1/contacts",
        summary="Add an emergency contact",
        description="A Lifeline user (`user_id`), a phone number, or both. At most 20.",
        auth=Auth.BEARER,
        body=rest.AddContact,
        answers={201: rest.ContactAnswer},
        errors=(404, 409),
        examples={"body": {"phone": "+4915112345678", "name": "Mum"}},
    )
    async def add_contact(request: web.Request, body: rest.AddContact) -> web.Response:
        identity = await door.identity(request)
        contact = await sos.add_contact(
            identity.user_id, user_id=body.user_id, phone=body.phone, name=body.name
        )
        return json_response({"contact": contact.public()}, status=201)

    @api.route(
        "GET",
        "/api/v1/contacts",
        summary="The caller's emergency contacts",
        auth=Auth.BEARER,
        answers={200: rest.Contacts},
    )
    async def list_contacts(request: web.Request) -> web.Response:
        identity = await door.identity(request)
        contacts = await sos.contacts(identity.user_id)
        return json_response({"contacts": [c.public() for c in contacts]})

    @api.route(
        "DELETE",
        "/api/v1/contacts/{contact_id}",
        summary="Remove an emergency contact",
        auth=Auth.BEARER,
        answers={204: None},
    )
    async def delete_contact(request: web.Request) -> web.Response:
        identity = await door.identity(request)
        await sos.delete_contact(identity.user_id, request.match_info["contact_id"])
        return web.Response(status=204)

    @api.route(
        "GET",
        "/api/v1/sos",
        summary="Alerts the caller raised or is a contact of, newest first",
        auth=Auth.BEARER,
        query=rest.AlertsQuery,
        answers={200: rest.Alerts},
    )
    async def alerts(request: web.Request, query: rest.AlertsQuery) -> web.Response:
        identity = await door.identity(request)
        found = await sos.alerts_of(identity.user_id, status=query.status, limit=query.limit)
        return json_response({"alerts": found})

    @api.route(
        "GET",
        "/api/v1/sos/{alert_id}",
        summary="One alert with its trail, recipients, audit and deliveries",
        description="For the raiser and the raiser's contacts; anyone else is 403.",
        auth=Auth.BEARER,
        answers={200: rest.AlertDetails},
        errors=(403,),
    )
    async def alert(request: web.Request) -> web.Response:
        identity = await door.identity(request)
        details = await sos.details(identity.user_id, request.match_info["alert_id"])
        return json_response(details)

    return api
