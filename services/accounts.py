"""What every account system has: codes by email, a second factor, operators.

Codes (password reset, email verification) are 6 digits, valid 10 minutes,
5 tries, stored as an HMAC with the server's secret, sent through the email
channel's outbox in the transaction that stores them, and limited per
account and per address; asking for a reset answers the same whether or not
the account exists. TOTP secrets are sealed with the data keys. Operators
(role ``admin``) list, block and unblock accounts and change roles; each of
their actions is kept in ``admin_audit``, and a block ends every session and
socket of the account on every node.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from services.auth import REGISTRABLE_ROLES, AuthService, Identity
from services.clock import Clock
from services.errors import Conflict, Forbidden, Invalid, NotFound, RateLimited
from services.totp import new_secret, provisioning_uri, totp_step
from storage.codes import CodeRepository
from storage.db import Database
from storage.deliveries import DeliveryRepository, NewDelivery
from storage.rooms import as_uuid
from storage.state import EphemeralState
from storage.users import UserRecord, UserRepository

__all__ = ["AccountRules", "AccountService"]

_ROLES = (*REGISTRABLE_ROLES, "admin")
_PASSWORD_RESET = "password_reset"  # noqa: S105 (a purpose, not a password)
_EMAIL_VERIFY = "email_verify"
# (subject, body) per kind of code; {code} and {minutes} are filled in.
_TEMPLATES = {
    _PASSWORD_RESET: (
        "Your Lifeline password reset code",
        "Someone asked to reset the password of your Lifeline account.\n\n"
        "Your code: {code}\n\nIt works once, for {minutes} minutes. If it was not you, "
        "ignore this email: your password stays as it is.",
    ),
    _EMAIL_VERIFY: (
        "Confirm your email for Lifeline",
        "Your code to confirm this email address: {code}\n\nIt works once, for {minutes} minutes.",
    ),
}


@dataclass(frozen=True, slots=True)
class AccountRules:
    code_ttl_s: float = 600.0
    code_tries: int = 5
    codes_per_hour: int = 5  # per account, and 4x that per client address
    issuer: str = "Lifeline"


class AccountService:
    def __init__(
        self,
        *,
        db: Database,
        auth: AuthService,
        users: UserRepository,
        codes: CodeRepository,
        deliveries: DeliveryRepository,
        state: EphemeralState,
        clock: Clock,
        secret: str,
        rules: AccountRules,
        kick_deliveries: Any,
    ) -> None:
        self._db = db
        self._auth = auth
        self._users = users
        self._codes = codes
        self._deliveries = deliveries
        self._state = state
        self._clock = clock
        self._secret = secret.encode()
        self._rules = rules
        self._kick = kick_deliveries

    # -- codes by email ---------------------------------------------------------------------

    async def forgot_password(self, email: str, *, address: str) -> None:
        """Send a reset code if the account exists; the answer is the same if not."""
        await self._limit(email, address)
        user = await self._users.by_email(email.strip())
        if user is not None and user.password_hash is not None:
            await self._send_code(user, _PASSWORD_RESET)

    async def reset_password(self, email: str, code: str, password: str, *, address: str) -> None:
        user = await self._users.by_email(email.strip())
        hashed = await self._auth.hash_password(password)
        if user is None:
            raise Invalid("wrong or spent code")
        async with self._db.transaction() as conn:
            right = await self._spend_code(conn, user.id, _PASSWORD_RESET, code)
            if right:
                await self._users.set_password(conn, user.id, hashed)
        if not right:  # the failed try is committed: five and the code is spent
            raise Invalid("wrong or spent code")
        await self._auth.end_user_sessions(user.id, reason="password reset")

    async def request_verification(self, identity: Identity, *, address: str) -> None:
        user = await self._auth.user(identity.user_id)
        await self._limit(user.email, address)
        if not user.email_verified:
            await self._send_code(user, _EMAIL_VERIFY)

    async def verify_email(self, identity: Identity, code: str) -> UserRecord:
        async with self._db.transaction() as conn:
            right = await self._spend_code(conn, identity.user_id, _EMAIL_VERIFY, code)
            if right:
                await self._users.set_email_verified(conn, identity.user_id)
        if not right:
            raise Invalid("wrong or spent code")
        return await self._auth.user(identity.user_id)

    async def _limit(self, email: str, address: str) -> None:
        for key, most in (
            (f"codes:acct:{email.strip().lower()}", self._rules.codes_per_hour),
            (f"codes:addr:{address}", self._rules.codes_per_hour * 4),
        ):
            count, retry_after = await self._state.incr(key, 3600)
            if count > most:
                raise RateLimited(
                    "too many codes asked for; try again later", retry_after=retry_after
                )

    async def _send_code(self, user: UserRecord, purpose: str) -> None:
        code = f"{secrets.randbelow(10**6):06d}"
        now = self._clock.now()
        subject, body = _TEMPLATES[purpose]
        minutes = int(self._rules.code_ttl_s // 60)
        async with self._db.transaction() as conn:
            await self._codes.put(
                conn,
                user.id,
                purpose,
                code_hash=self._hash(user.id, purpose, code),
                expires_at=now + self._rules.code_ttl_s,
            )
            await self._deliveries.enqueue(
                conn,
                [
                    NewDelivery(
                        source="account",
                        source_id=user.id,
                        channel="email",
                        user_id=user.id,
                        address=user.email,
                        kind=purpose,
                        title=subject,
                        body=body.format(code=code, minutes=minutes),
                    )
                ],
                now=now,
            )
        self._kick()

    async def _spend_code(self, conn: Any, user_id: str, purpose: str, code: str) -> bool:
        """True and spent if the code is right; False (the try counted) if wrong; raises
        ``invalid`` when there is no live code (expired, spent, out of tries)."""
        stored = await self._codes.take(conn, user_id, purpose)
        spent = (
            stored is None
            or stored.expires_at <= self._clock.now()
            or stored.tries >= self._rules.code_tries
        )
        if spent or not isinstance(code, str):
            raise Invalid("wrong or spent code")
        assert stored is not None
        if not hmac.compare_digest(stored.code_hash, self._hash(user_id, purpose, code)):
            await self._codes.tried(conn, user_id, purpose)
            return False
        await self._codes.spend(conn, user_id, purpose)
        return True

    def _hash(self, user_id: str, purpose: str, code: str) -> str:
        message = f"{user_id}:{purpose}:{code}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    # -- two-factor -------------------------------------------------------------------------

    async def totp_begin(self, identity: Identity) -> dict[str, str]:
        user = await self._auth.user(identity.user_id)
        secret = new_secret()
        async with self._db.transaction() as conn:
            current = await self._users.totp(conn, user.id, lock=True)
            await self._users.set_totp(
                conn, user.id, secret=current.secret, pending=secret, last_step=current.last_step
            )
        uri = provisioning_uri(secret, account=user.email, issuer=self._rules.issuer)
        return {"secret": secret, "otpauth_uri": uri}

    async def totp_confirm(self, identity: Identity, code: str) -> None:
        async with self._db.transaction() as conn:
            state = await self._users.totp(conn, identity.user_id, lock=True)
            if state.pending is None:
                raise Conflict("no two-factor setup is pending: POST /me/totp first")
            step = totp_step(state.pending, code, now=self._clock.now(), after=None)
            if step is None:
                raise Invalid("wrong code")
            await self._users.set_totp(
                conn, identity.user_id, secret=state.pending, pending=None, last_step=step
            )

    async def totp_disable(self, identity: Identity, code: str) -> None:
        async with self._db.transaction() as conn:
            state = await self._users.totp(conn, identity.user_id, lock=True)
            if state.secret is None:
                raise Conflict("two-factor is not on")
            step = totp_step(state.secret, code, now=self._clock.now(), after=state.last_step)
            if step is None:
                raise Invalid("wrong or already used code")
            await self._users.set_totp(
                conn, identity.user_id, secret=None, pending=None, last_step=None
            )

    # -- operators --------------------------------------------------------------------------

    async def list_users(
        self, identity: Identity, *, query: str | None, limit: int | None
    ) -> list[UserRecord]:
        await self._operator(identity)
        if limit is not None and limit < 1:
            raise Invalid("limit must be at least 1")
        return await self._users.search(query or None, limit=min(limit or 50, 200))

    async def update_user(
        self, identity: Identity, user_id: str, *, blocked: bool | None, role: str | None
    ) -> UserRecord:
        await self._operator(identity)
        target = as_uuid(user_id)
        if target is None or await self._users.by_id(target) is None:
            raise NotFound("no such user")
        if role is not None and role not in _ROLES:
            raise Invalid(f"role must be one of {', '.join(_ROLES)}")
        if target == identity.user_id and blocked:
            raise Forbidden("operators do not block themselves")
        now = self._clock.now()
        async with self._db.transaction() as conn:
            if role is not None:
                await self._users.set_role(conn, target, role)
                await self._users.audit(
                    conn,
                    actor_id=identity.user_id,
                    action="role",
                    target_id=target,
                    detail={"role": role},
                    now=now,
                )
            if blocked is not None:
                await self._users.set_blocked(conn, target, blocked=blocked)
                await self._users.audit(
                    conn,
                    actor_id=identity.user_id,
                    action="block" if blocked else "unblock",
                    target_id=target,
                    detail={},
                    now=now,
                )
        if blocked is not None:
            await self._auth.blocked(target, blocked=blocked)
        return await self._auth.user(target)

    async def _operator(self, identity: Identity) -> None:
        user = await self._auth.user(identity.user_id)
        if user.role != "admin":
            raise Forbidden("only operators (role admin) may do this")
