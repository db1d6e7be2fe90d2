"""Personal data at rest: phone numbers and SOS positions are AES-256-GCM ciphertext in
PostgreSQL, read back for those allowed, and re-encrypted when the key rotates."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from dataclasses import replace

import asyncpg

from server.cli import _rotate
from storage.crypto import FieldCipher, parse_keys
from tests.clients import Socket
from tests.conftest import ServerFactory, base_settings
from tests.services import DATA_KEYS

SocketFactory = Callable[..., Socket]
PHONE = "+4915112345678"


async def test_phones_and_positions_are_ciphertext_in_the_database(
    make_server: ServerFactory, db: str, sockets: SocketFactory
) -> None:
    server = await make_server()
    alice = await server.api.register(phone=PHONE)
    bob = await server.api.register()
    status, contact, _ = await server.api.call(
        "POST",
        "/api/v1/contacts",
        json={"phone": "+447911123456", "name": "Dora"},
        token=alice.access_token,
    )
    assert status == 201 and contact["contact"]["phone"] == "+447911123456"
    await server.api.call(
        "POST",
        "/api/v1/contacts",
        json={"user_id": bob.id, "name": "Bob"},
        token=alice.access_token,
    )
    raiser = sockets()
    await raiser.connect(server.url, token=alice.access_token)
    ack = await raiser.call("sos:raise", {"client_alert_id": "p", "lat": 48.8566, "lon": 2.3522})
    await raiser.call("sos:location", {"alert_id": ack["alert"]["id"], "lat": 48.86, "lon": 2.35})
    conn = await asyncpg.connect(db)
    try:
        rows = []
        for table in (
            "users",
            "emergency_contacts",
            "sos_recipients",
            "sos_alerts",
            "sos_locations",
            "deliveries",
        ):
            rows += [str(dict(r)) for r in await conn.fetch(f"SELECT * FROM {table}")]
        dump = "\n".join(rows)
        stored_phone = await conn.fetchval("SELECT phone FROM users WHERE id = $1::uuid", alice.id)
    finally:
        await conn.close()
    for secret in ("15112345678", "7911123456", "48.8566", "2.3522", "48.86"):
        assert secret not in dump, secret
    assert stored_phone.startswith("enc1:k1:")
    # Those allowed read it back in the clear.
    status, details, _ = await server.api.call(
        "GET", f"/api/v1/sos/{ack['alert']['id']}", token=bob.access_token
    )
    assert [(p["lat"], p["lon"]) for p in details["trail"]] == [(48.8566, 2.3522), (48.86, 2.35)]
    assert ack["alert"]["lat"] == 48.8566


async def test_rotating_the_key_keeps_everything_readable(
    make_server: ServerFactory, db: str, sockets: SocketFactory
) -> None:
    server = await make_server()
    alice = await server.api.register(phone=PHONE)
    bob = await server.api.register()
    await server.api.call(
        "POST",
        "/api/v1/contacts",
        json={"user_id": bob.id, "name": "Bob"},
        token=alice.access_token,
    )
    raiser = sockets()
    await raiser.connect(server.url, token=alice.access_token)
    ack = await raiser.call(
        "sos:raise", {"client_alert_id": uuid.uuid4().hex, "lat": 10.5, "lon": 20.25}
    )
    new_keys = "k2:" + base64.b64encode(b"n" * 32).decode() + "," + DATA_KEYS
    counts = await _rotate(db, tuple(parse_keys(new_keys).items()))
    assert counts["users.phone"] == 1 and counts["sos_alerts.position"] == 1
    conn = await asyncpg.connect(db)
    try:
        assert (
            await conn.fetchval("SELECT phone FROM users WHERE id = $1::uuid", alice.id)
        ).startswith("enc1:k2:")
    finally:
        await conn.close()
    # A node that knows only the new key reads all of it.
    only_new = "k2:" + base64.b64encode(b"n" * 32).decode()
    rotated = await make_server(
        replace(base_settings(db), data_keys=tuple(parse_keys(only_new).items()))
    )
    status, details, _ = await rotated.api.call(
        "GET", f"/api/v1/sos/{ack['alert']['id']}", token=bob.access_token
    )
    assert status == 200 and details["trail"][0]["lat"] == 10.5
    cipher = FieldCipher(parse_keys(only_new))
    assert cipher.decrypt(cipher.encrypt(PHONE, "phone"), "phone") == PHONE
