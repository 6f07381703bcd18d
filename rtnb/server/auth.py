"""Access tokens: HS256 JWTs carrying tenant, user, role and expiry.

Verification is strict on purpose:

* only ``HS256`` is accepted, so ``alg: none`` and algorithm-confusion tokens
  are refused by PyJWT before any claim is read;
* ``leeway=0``: a token is expired the second its ``exp`` passes;
* ``tenant``, ``user``, ``role`` and ``exp`` are required, and the role must be
  one of :data:`~rtnb.server.config.ROLES`; a claim of the wrong JSON type
  (``role`` a list, ``exp`` a string or ``true``, ``tenant`` a number) is
  ``invalid_token``, never an exception;
* ``expire_tokens()`` (chaos) raises the minimum accepted generation (``gen``
  claim, 0 when absent), so every token minted before it is refused as expired.

Error messages say what was wrong and what to do; they never echo the token.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from typing import Any, Final

import jwt

from ..protocol.errors import RtnbError
from .config import ROLES

ALGORITHM: Final = "HS256"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$")
_RANK: Final = {role: i for i, role in enumerate(ROLES)}


def role_rank(role: str) -> int:
    """Rank of a role: viewer 0 < operator 1 < admin 2; unknown roles raise ``KeyError``."""
    return _RANK[role]


class AuthError(RtnbError):
    """A token was refused. ``code`` is the wire error code (``token_expired``, ...)."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(message)


@dataclasses.dataclass(frozen=True, slots=True)
class Identity:
    """Who a verified token speaks for."""

    tenant: str
    user: str
    role: str
    expires_at: float

    def at_least(self, role: str) -> bool:
        return _RANK[self.role] >= _RANK[role]


class TokenAuthority:
    """Mints and verifies access tokens with one shared secret."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 32:
            raise ValueError("the token secret must be at least 32 bytes (256 bits) for HS256")
        self._secret = secret
        self._generation = 0
        self._min_generation = 0

    def issue(
        self, *, tenant: str, user: str, role: str, ttl: float, now: float | None = None
    ) -> str:
        """A signed token for ``tenant``/``user`` with ``role``, valid ``ttl`` seconds."""
        for name, value in (("tenant", tenant), ("user", user)):
            if not _NAME.match(value):
                raise ValueError(
                    f"{name} {value!r} is not a valid name: use 1-128 of A-Z a-z 0-9 _ . : @ -"
                )
        if role not in _RANK:
            raise ValueError(f"unknown role {role!r}; expected one of {ROLES}")
        if ttl <= 0:
            raise ValueError(f"ttl must be > 0 seconds, got {ttl}")
        issued = time.time() if now is None else now
        claims: dict[str, Any] = {
            "tenant": tenant,
            "user": user,
            "role": role,
            "iat": int(issued),
            "exp": math.ceil(issued + ttl),
            "gen": self._generation,
        }
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def expire_all(self) -> None:
        """Refuse every token minted so far, as if it had expired."""
        self._generation += 1
        self._min_generation = self._generation

    def verify(self, token: str, *, now: float | None = None) -> Identity:
        """Return the token's identity, or raise :class:`AuthError`."""
        options: dict[str, Any] = {"require": ["exp", "tenant", "user", "role"]}
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                options=options,  # type: ignore[arg-type]
                leeway=0,
            )
        except jwt.ExpiredSignatureError:
            raise AuthError(
                "token_expired",
                f"the access token expired at {_expiry(token)}; authenticate with a fresh one",
            ) from None
        except jwt.InvalidAlgorithmError:
            raise AuthError(
                "invalid_token", f"the access token must be signed with {ALGORITHM}"
            ) from None
        except jwt.InvalidSignatureError:
            raise AuthError(
                "invalid_token",
                "the access token's signature does not match this server: it was signed "
                "with another secret (mint it with this server's secret)",
            ) from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError(
                "invalid_token", f"the access token lacks the {exc.claim!r} claim"
            ) from None
        except jwt.PyJWTError:
            raise AuthError(
                "invalid_token",
                "the access token is malformed: not a JWT (header.claims.signature), or a "
                "registered claim such as exp, iat or nbf is not a number; mint a new one",
            ) from None
        if not isinstance(claims, dict):  # pragma: no cover - PyJWT only returns objects
            raise AuthError("invalid_token", "the access token's claims are not a JSON object")
        tenant, user, role = claims["tenant"], claims["user"], claims["role"]
        if not (isinstance(tenant, str) and _NAME.match(tenant)):
            raise AuthError("invalid_token", "the access token's tenant claim is not a valid name")
        if not (isinstance(user, str) and _NAME.match(user)):
            raise AuthError("invalid_token", "the access token's user claim is not a valid name")
        if not (isinstance(role, str) and role in _RANK):
            raise AuthError("invalid_token", f"the access token's role must be one of {ROLES}")
        gen = claims.get("gen", 0)
        if type(gen) is not int:
            raise AuthError("invalid_token", "the access token's gen claim must be an integer")
        if gen < self._min_generation:
            raise AuthError(
                "token_expired", "the access token was revoked; authenticate with a fresh one"
            )
        exp = claims["exp"]
        if type(exp) not in (int, float) or not math.isfinite(exp):
            raise AuthError("invalid_token", "the access token's exp claim must be a number")
        exp = float(exp)
        if now is not None and exp <= now:
            raise AuthError(
                "token_expired",
                f"the access token expired at {_utc(exp)}; authenticate with a fresh one",
            )
        return Identity(tenant=tenant, user=user, role=role, expires_at=exp)

    def bearer(self, header: str | None) -> Identity:
        """Verify an ``Authorization: Bearer <token>`` header value."""
        if not header:
            raise AuthError(
                "unauthenticated", "send the access token in an 'Authorization: Bearer' header"
            )
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("unauthenticated", "the Authorization header must be 'Bearer <token>'")
        return self.verify(token.strip())


def _utc(unix: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(unix))


def _expiry(token: str) -> str:
    """When an (already verified, expired) token expired; its claims only, never the token."""
    try:
        claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
        return _utc(float(claims["exp"]))
    except (jwt.PyJWTError, KeyError, TypeError, ValueError, OverflowError, OSError):
        return "an earlier time"
