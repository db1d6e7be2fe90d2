"""Authentication: accounts, token pairs, rotation, revocation, login throttling.

Access tokens are HS256 JWTs (``typ`` access) carrying ``jti`` and the
refresh family ``fid``; refresh tokens are JWTs (``typ`` refresh) whose state
lives in PostgreSQL. Reusing a rotated refresh token revokes its family, and
with it every access token issued under that family. Revocation is recorded
in PostgreSQL and in the shared ephemeral state (Redis in a cluster), and the
sockets of revoked tokens are disconnected on every node.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import phonenumbers
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from integrations.jwks import JwksError, JwksVerifier
from services.addresses import mask_address
from services.clock import Clock, iso
from services.errors import (
    AppError,
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    RateLimited,
    TotpRequired,
    Unauthorized,
)
from services.ports import SessionTerminator
from services.totp import totp_step
from services.wire.base import EMAIL_PATTERN
from storage.db import Database, Queryable
from storage.state import EphemeralState
from storage.tokens import TokenRepository
from storage.users import UserRecord, UserRepository

__all__ = [
    "REGISTRABLE_ROLES",
    "AuthService",
    "Identity",
    "LoginThrottle",
    "TokenPair",
    "normalize_phone",
]

log = logging.getLogger(__name__)

REGISTRABLE_ROLES = ("patient", "relative", "doctor", "organizer", "donor")
_EMAIL = re.compile(EMAIL_PATTERN)


@dataclass(frozen=True, slots=True)
class Identity:
    user_id: str
    jti: str
    family_id: str | None
    expires_at: float
    external: bool = False


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    refresh_token: str

    def body(self) -> dict[str, str]:
        return {"access_token": self.access_token, "refresh_token": self.refresh_token}


def normalize_phone(raw: str) -> str:
    """E.164, or Invalid."""
    try:
        number = phonenumbers.parse(raw, None)
    except phonenumbers.NumberParseException:
        raise Invalid("phone must be an E.164 number such as +4915112345678") from None
    if not phonenumbers.is_valid_number(number):
        raise Invalid("phone must be a valid E.164 number")
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


class LoginThrottle:
    """Failed logins per account and per client address: growing delays, then a lockout."""

    def __init__(
        self,
        state: EphemeralState,
        *,
        free_failures: int,
        lockout_failures: int,
        lockout_s: float,
        window_s: float,
        address_factor: int = 5,
    ) -> None:
        self._state = state
        self._free = free_failures
        self._lockout = lockout_failures
        self._lockout_s = lockout_s
        self._window = window_s
        self._address_factor = address_factor

    @staticmethod
    def _keys(account: str, address: str) -> tuple[str, str]:
        return f"login:acct:{account.lower()}", f"login:addr:{address}"

    async def check(self, account: str, address: str) -> None:
        acct, addr = self._keys(account, address)
        wait = await self._state.flag_ttl([acct + ":block", addr + ":block"])
        if wait > 0:
            raise RateLimited("too many failed logins; try again later", retry_after=wait)

    async def failed(self, account: str, address: str) -> None:
        for key, factor in zip(
            self._keys(account, address), (1, self._address_factor), strict=True
        ):
            count, _ = await self._state.incr(key, self._window)
            if count >= self._lockout * factor:
                await self._state.set_flag(key + ":block", self._lockout_s)
            elif count > self._free * factor:
                delay = min(2.0 ** (count - self._free * factor - 1), self._lockout_s)
                await self._state.set_flag(key + ":block", delay)

    async def succeeded(self, account: str, address: str) -> None:
        acct, _ = self._keys(account, address)
        await self._state.delete(acct, acct + ":block")


class AuthService:
    def __init__(
        self,
        *,
        db: Database,
        users: UserRepository,
        tokens: TokenRepository,
        state: EphemeralState,
        throttle: LoginThrottle,
        sessions: SessionTerminator,
        clock: Clock,
        secret: str,
        issuer: str,
        access_ttl_s: int,
        refresh_ttl_s: int,
        hasher: PasswordHasher,
        external: JwksVerifier | None = None,
        admin_emails: frozenset[str] = frozenset(),
    ) -> None:
        self._db = db
        self._users = users
        self._tokens = tokens
        self._state = state
        self._throttle = throttle
        self._sessions = sessions
        self._clock = clock
        self._secret = secret
        self._issuer = issuer
        self._access_ttl = access_ttl_s
        self._refresh_ttl = refresh_ttl_s
        self._hasher = hasher
        self._external = external
        # Verifying against this keeps a login for an unknown email as slow as a real one.
        self._dummy_hash = hasher.hash("lifeline-timing-equalizer")
        self._admin_emails = frozenset(e.lower() for e in admin_emails)

    # -- accounts ---------------------------------------------------------------------------

    async def register(
        self,
        *,
        email: str,
        password: str,
        display_name: str,
        role: str,
        phone: str | None,
        user_agent: str | None = None,
        address: str | None = None,
    ) -> tuple[UserRecord, TokenPair]:
        email = email.strip()
        if not _EMAIL.match(email):
            raise Invalid("email is not a valid address")
        if role not in REGISTRABLE_ROLES:
            raise Invalid(f"role must be one of {', '.join(REGISTRABLE_ROLES)}")
        if len(password) < 8:
            raise Invalid("password must be at least 8 characters")
        e164 = normalize_phone(phone) if phone else None
        if email.lower() in self._admin_emails:
            role = "admin"  # operators are named by configuration, never self-appointed
        hashed = await asyncio.to_thread(self._hasher.hash, password)
        async with self._db.transaction() as conn:  # the account and its first login
            user = await self._users.create(
                conn,
                email=email,
                display_name=display_name.strip() or email,
                role=role,
                phone=e164,
                password_hash=hashed,
            )
            if user is None:
                raise Conflict("an account with this email exists")
            pair = await self._issue_new_family(conn, user.id, user_agent=user_agent, ip=address)
        return user, pair

    async def login(
        self,
        *,
        email: str,
        password: str,
        address: str,
        totp: str | None = None,
        user_agent: str | None = None,
    ) -> tuple[UserRecord, TokenPair]:
        await self._throttle.check(email, address)
        user = await self._users.by_email(email.strip())
        stored = user.password_hash if user is not None else None
        ok = await asyncio.to_thread(self._verify_password, stored or self._dummy_hash, password)
        if user is None or stored is None or not ok:
            await self._throttle.failed(email, address)
            raise Unauthorized("wrong email or password")
        if user.blocked:
            raise Forbidden("this account is blocked")
        if user.totp_on:
            if totp is None:
                raise TotpRequired()
            if not await self._second_factor(user.id, totp):
                await self._throttle.failed(email, address)
                raise TotpRequired("wrong or already used one-time code")
        await self._throttle.succeeded(email, address)
        async with self._db.transaction() as conn:
            pair = await self._issue_new_family(conn, user.id, user_agent=user_agent, ip=address)
        return user, pair

    async def _second_factor(self, user_id: str, code: str) -> bool:
        async with self._db.transaction() as conn:
            state = await self._users.totp(conn, user_id, lock=True)
            if state.secret is None:
                return True
            step = totp_step(state.secret, code, now=self._clock.now(), after=state.last_step)
            if step is None:
                return False
            await self._users.set_totp_step(conn, user_id, step)
            return True

    def hash_password(self, password: str) -> Awaitable[str]:
        if len(password) < 8:
            raise Invalid("password must be at least 8 characters")
        return asyncio.to_thread(self._hasher.hash, password)

    def _verify_password(self, hashed: str, password: str) -> bool:
        try:
            return self._hasher.verify(hashed, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    async def user(self, user_id: str) -> UserRecord:
        user = await self._users.by_id(user_id)
        if user is None:
            raise Unauthorized("this account no longer exists")
        return user

    # -- tokens -----------------------------------------------------------------------------

    async def refresh(self, refresh_token: str) -> TokenPair:
        claims = self._decode(refresh_token, expected_type="refresh")
        family_id = str(claims["fid"])
        new_id = str(uuid.uuid4())
        now = self._now()
        async with self._db.transaction() as conn:
            outcome = await self._tokens.rotate(
                conn,
                token_id=str(claims["jti"]),
                family_id=family_id,
                new_token_id=new_id,
                issued_at=now,
                expires_at=now + timedelta(seconds=self._refresh_ttl),
            )
        if outcome.status == "reused":
            log.warning("refresh token reused; family revoked", extra={"family_id": family_id})
            await self._revoke_family(family_id)
            raise Unauthorized("refresh token was already used; please log in again")
        if outcome.status != "rotated" or outcome.user_id is None:
            raise Unauthorized("refresh token is no longer valid")
        owner = await self._users.by_id(outcome.user_id)
        if owner is None or owner.blocked:
            await self._tokens.revoke_family(self._db, family_id, reason="blocked")
            raise Forbidden("this account is blocked")
        return TokenPair(
            self._access_token(outcome.user_id, family_id, now),
            self._refresh_token(outcome.user_id, family_id, new_id, now),
        )

    async def logout(self, identity: Identity) -> None:
        """The access token dies at once; its login's refresh family dies with it."""
        remaining = max(1.0, identity.expires_at - self._clock.now())
        async with self._db.transaction() as conn:
            await self._tokens.revoke_access(
                conn, identity.jti, datetime.fromtimestamp(identity.expires_at, UTC)
            )
            if identity.family_id is not None:
                await self._tokens.revoke_family(conn, identity.family_id, reason="logout")
        await self._state.set_flag(f"revoked:jti:{identity.jti}", remaining)
        if identity.family_id is not None:
            await self._state.set_flag(f"revoked:fid:{identity.family_id}", self._access_ttl)
        await self._sessions.end_sessions(jti=identity.jti, family_id=identity.family_id)

    async def authenticate(self, token: object) -> Identity:
        """A valid, unrevoked access token, or Unauthorized."""
        if not isinstance(token, str) or not token or len(token) > 8192:
            raise Unauthorized()
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthorized() from None
        if header.get("alg") != "HS256":
            if self._external is None:
                raise Unauthorized()
            return await self._authenticate_external(token)
        claims = self._decode(token, expected_type="access")
        identity = Identity(
            user_id=str(claims["sub"]),
            jti=str(claims["jti"]),
            family_id=str(claims["fid"]) if claims.get("fid") else None,
            expires_at=float(claims["exp"]),
        )
        if await self.is_revoked(identity):
            raise await self._refusal(identity.user_id)
        return identity

    async def _refusal(self, user_id: str) -> AppError:
        """A revoked token: forbidden if its user is blocked, else unauthorized."""
        if await self._state.flag_ttl([f"blocked:user:{user_id}"]) > 0:
            return Forbidden("this account is blocked")
        return Unauthorized()

    async def socket_refresh(self, current: Identity, token: object) -> Identity:
        """``auth:refresh``: a fresh, unrevoked access token of the same user, or
        Unauthorized (and the socket goes on under the token it had)."""
        identity = await self.authenticate(token)
        if identity.user_id != current.user_id:
            raise Unauthorized("that token belongs to another user")
        return identity

    # -- sessions ---------------------------------------------------------------------------

    async def sessions(self, identity: Identity) -> list[dict[str, Any]]:
        found = await self._tokens.sessions_of(identity.user_id, now=self._now())
        return [
            {
                "id": s.id,
                "created_at": iso(s.created_at),
                "last_used_at": iso(s.last_used_at),
                "user_agent": s.user_agent,
                "ip": mask_address(s.ip),
                "current": s.id == identity.family_id,
            }
            for s in found
        ]

    async def end_session(self, identity: Identity, session_id: str) -> None:
        """Revoke one login of the caller's: its refresh family and access tokens."""
        try:
            family = str(uuid.UUID(session_id))
        except ValueError:
            raise NotFound("no such session") from None
        if await self._tokens.live_family_owner(family) != identity.user_id:
            raise NotFound("no such session")
        await self._tokens.revoke_family(self._db, family, reason="ended")
        await self._revoke_family(family)

    async def end_other_sessions(self, identity: Identity) -> None:
        await self.end_user_sessions(identity.user_id, keep=identity.family_id, reason="ended")

    async def end_user_sessions(
        self, user_id: str, *, reason: str, keep: str | None = None
    ) -> None:
        """Every login of the user but ``keep`` ends, with its sockets, on every node."""
        ended = await self._tokens.revoke_families_of(self._db, user_id, reason=reason, keep=keep)
        for family in ended:
            await self._revoke_family(family)

    async def blocked(self, user_id: str, *, blocked: bool) -> None:
        """After a block is committed: every token and socket of the user ends at once."""
        if blocked:
            await self._state.set_flag(f"blocked:user:{user_id}", self._access_ttl)
            await self.end_user_sessions(user_id, reason="blocked")
            await self._sessions.end_sessions(user_id=user_id)
        else:
            await self._state.delete(f"blocked:user:{user_id}")

    async def is_revoked(self, identity: Identity) -> bool:
        keys = [f"revoked:jti:{identity.jti}"]
        if identity.family_id:
            keys.append(f"revoked:fid:{identity.family_id}")
        return await self._state.flag_ttl(keys) > 0

    async def load_revocations(self) -> None:
        """Fill a fresh in-process state from PostgreSQL (single node after a restart)."""
        now = self._now()
        tokens, families = await self._tokens.live_revocations(
            now, now - timedelta(seconds=self._access_ttl)
        )
        for jti, expires_at in tokens:
            await self._state.set_flag(f"revoked:jti:{jti}", (expires_at - now).total_seconds())
        for family_id in families:
            await self._state.set_flag(f"revoked:fid:{family_id}", self._access_ttl)

    async def _revoke_family(self, family_id: str) -> None:
        await self._state.set_flag(f"revoked:fid:{family_id}", self._access_ttl)
        await self._sessions.end_sessions(family_id=family_id)

    async def _authenticate_external(self, token: str) -> Identity:
        assert self._external is not None
        try:
            claims = await self._external.verify(token)
        except JwksError:
            raise Unauthorized() from None
        sub = str(claims["sub"])
        user = await self._users.by_external_sub(sub)
        if user is not None and user.blocked:
            raise Forbidden("this account is blocked")
        if user is None:
            email = claims.get("email")
            if not isinstance(email, str) or not _EMAIL.match(email):
                email = f"{uuid.uuid5(uuid.NAMESPACE_URL, sub)}@external.invalid"
            name = claims.get("name")
            user = await self._users.create(
                self._db,
                email=email,
                display_name=name if isinstance(name, str) and name else email,
                role="donor",
                phone=None,
                password_hash=None,
                external_sub=sub,
            ) or await self._users.by_external_sub(sub)
            if user is None:
                raise Unauthorized("the identity provider's account clashes with a local one")
        jti = str(claims.get("jti") or uuid.uuid5(uuid.NAMESPACE_URL, token))
        identity = Identity(user.id, jti, None, float(claims["exp"]), external=True)
        if await self.is_revoked(identity):
            raise await self._refusal(identity.user_id)
        return identity

    # -- JWT --------------------------------------------------------------------------------

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock.now(), UTC)

    async def _issue_new_family(
        self,
        conn: Queryable,
        user_id: str,
        *,
        user_agent: str | None = None,
        ip: str | None = None,
    ) -> TokenPair:
        family_id = str(uuid.uuid4())
        token_id = str(uuid.uuid4())
        now = self._now()
        await self._tokens.start_family(
            conn,
            family_id=family_id,
            user_id=user_id,
            token_id=token_id,
            issued_at=now,
            expires_at=now + timedelta(seconds=self._refresh_ttl),
            user_agent=(user_agent or "")[:300] or None,
            ip=ip if ip and ip != "unknown" else None,
        )
        return TokenPair(
            self._access_token(user_id, family_id, now),
            self._refresh_token(user_id, family_id, token_id, now),
        )

    def _access_token(self, user_id: str, family_id: str, now: datetime) -> str:
        return self._encode(
            {
                "sub": user_id,
                "typ": "access",
                "jti": str(uuid.uuid4()),
                "fid": family_id,
                "iat": int(now.timestamp()),
                "exp": int(now.timestamp()) + self._access_ttl,
            }
        )

    def _refresh_token(self, user_id: str, family_id: str, token_id: str, now: datetime) -> str:
        return self._encode(
            {
                "sub": user_id,
                "typ": "refresh",
                "jti": token_id,
                "fid": family_id,
                "iat": int(now.timestamp()),
                "exp": int(now.timestamp()) + self._refresh_ttl,
            }
        )

    def _encode(self, claims: dict[str, Any]) -> str:
        claims["iss"] = self._issuer
        return jwt.encode(claims, self._secret, algorithm="HS256")

    def _decode(self, token: str, *, expected_type: str) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._secret,
                algorithms=["HS256"],
                issuer=self._issuer,
                # Expiry is checked below against the injected clock; a future iat
                # (another node's clock a little ahead) is no reason to refuse.
                options={
                    "require": ["exp", "sub", "jti", "typ"],
                    "verify_exp": False,
                    "verify_iat": False,
                },
            )
        except jwt.PyJWTError:
            raise Unauthorized() from None
        if claims.get("typ") != expected_type or float(claims["exp"]) <= self._clock.now():
            raise Unauthorized()
        try:
            uuid.UUID(str(claims["jti"]))
            uuid.UUID(str(claims["sub"]))
            if claims.get("fid") is not None:
                uuid.UUID(str(claims["fid"]))
        except ValueError:
            raise Unauthorized() from None
        return claims
