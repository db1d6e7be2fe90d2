"""Personal data at rest: AES-256-GCM per value, with a key id beside each value.

A value is stored as ``enc1:<key id>:<base64(nonce | ciphertext)>``. The
first configured key encrypts; every configured key decrypts, so keys rotate
by putting a new one first and keeping the old ones until
``python -m server rotate-keys`` (or a re-save) has rewritten what they hold.
The kind of value (``phone``, ``position``, ``address``) is authenticated
too, so a ciphertext cannot be moved into a column of another kind.
Values without the prefix are read as they are (written before encryption).
"""

from __future__ import annotations

import base64
import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["FieldCipher", "parse_keys"]

_PREFIX = "enc1:"


def parse_keys(text: str) -> dict[str, bytes]:
    """``kid:base64key,kid2:base64key`` (first one current) into {kid: 32-byte key}."""
    keys: dict[str, bytes] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        kid, sep, encoded = part.partition(":")
        if not sep or not kid or ":" in kid:
            raise ValueError("each data key is <id>:<base64 of 32 bytes>")
        key = base64.b64decode(encoded, validate=True)
        if len(key) != 32:
            raise ValueError(f"data key {kid} is not 32 bytes (AES-256)")
        keys[kid] = key
    return keys


class FieldCipher:
    def __init__(self, keys: dict[str, bytes]) -> None:
        if not keys:
            raise ValueError("at least one data key is needed")
        self._current = next(iter(keys))
        self._aead = {kid: AESGCM(key) for kid, key in keys.items()}

    @property
    def current_key_id(self) -> str:
        return self._current

    def encrypt(self, value: str | None, kind: str) -> str | None:
        if value is None:
            return None
        nonce = os.urandom(12)
        sealed = self._aead[self._current].encrypt(nonce, value.encode(), kind.encode())
        return f"{_PREFIX}{self._current}:{base64.b64encode(nonce + sealed).decode()}"

    def decrypt(self, stored: str | None, kind: str) -> str | None:
        if stored is None or not stored.startswith(_PREFIX):
            return stored
        kid, _, blob = stored[len(_PREFIX) :].partition(":")
        aead = self._aead.get(kid)
        if aead is None:
            raise LookupError(f"data key {kid!r} is not configured; it is needed to read old data")
        raw = base64.b64decode(blob)
        return aead.decrypt(raw[:12], raw[12:], kind.encode()).decode()
