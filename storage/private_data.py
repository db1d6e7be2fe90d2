"""Where personal data is kept, and re-encrypting all of it with the current data key."""

from __future__ import annotations

import asyncpg

from storage.crypto import FieldCipher

__all__ = ["ENCRYPTED_COLUMNS", "reencrypt"]

# (table, row key, its type, value column, kind)
ENCRYPTED_COLUMNS = (
    ("users", "id", "uuid", "phone", "phone"),
    ("users", "id", "uuid", "totp_secret", "totp"),
    ("users", "id", "uuid", "totp_pending", "totp"),
    ("emergency_contacts", "id", "uuid", "phone", "phone"),
    ("sos_recipients", "ctid", "tid", "phone", "phone"),
    ("deliveries", "id", "bigint", "address", "address"),
    ("deliveries", "id", "bigint", "body", "body"),
    ("sos_alerts", "id", "uuid", "position", "position"),
    ("sos_locations", "ctid", "tid", "position", "position"),
)


async def reencrypt(pool: asyncpg.Pool, cipher: FieldCipher) -> dict[str, int]:
    """Rewrite every value not sealed with the current key (older keys, plain text).

    Old keys must still be configured while this runs; afterwards they can go.
    Positions written before encryption (plain lat/lon columns) are sealed too.
    """
    done: dict[str, int] = {}
    current = f"enc1:{cipher.current_key_id}:"
    async with pool.acquire() as conn:
        for table, key, _key_type, column, kind in ENCRYPTED_COLUMNS:
            rows = await conn.fetch(
                f"""SELECT {key} AS k, {column} AS v FROM {table}
                     WHERE {column} IS NOT NULL AND {column} NOT LIKE $1 || '%'""",
                current,
            )
            for row in rows:
                plain = cipher.decrypt(row["v"], kind)
                await conn.execute(
                    f"UPDATE {table} SET {column} = $2 WHERE {key} = $1",
                    row["k"],
                    cipher.encrypt(plain, kind),
                )
            done[f"{table}.{column}"] = len(rows)
        for table in ("sos_alerts", "sos_locations"):
            legacy = await conn.fetch(
                f"""SELECT ctid AS k, lat, lon, accuracy_m FROM {table}
                     WHERE position IS NULL AND lat IS NOT NULL"""
            )
            for row in legacy:
                accuracy = "" if row["accuracy_m"] is None else repr(row["accuracy_m"])
                sealed = cipher.encrypt(f"{row['lat']!r},{row['lon']!r},{accuracy}", "position")
                await conn.execute(
                    f"""UPDATE {table} SET position = $2, lat = NULL, lon = NULL, accuracy_m = NULL
                         WHERE ctid = $1""",
                    row["k"],
                    sealed,
                )
            done[f"{table} plain positions"] = len(legacy)
    return done
