"""Access tokens: who may start, list, inspect and end calls, and within which limits.

With ``BRIDGE_AUTH_SECRET`` set, every endpoint that starts, lists, inspects or ends a session
needs ``Authorization: Bearer <token>`` (or ``?token=`` where a browser cannot set headers:
WebSockets, ``<audio>``-less fetches; it is redacted from every log line). A token is a JWT
signed with HS256 by that secret (PyJWT checks the signature in constant time, and nothing but
HS256 is accepted), short-lived (``exp`` required; lifetimes over ``token_max_ttl`` are
refused), and may carry grants: allowed providers and models, a maximum call duration, a
maximum of concurrent calls, a USD budget for all its calls, and ``admin`` (list and end every
call). A call belongs to the token that started it (its ``sub``): only that token or an admin
token may inspect or end it. ``bridge token`` mints tokens.

Without a secret the bridge is open, which :class:`~bridge.server.config.Settings` allows only
on a loopback address unless ``allow_unauthenticated`` says otherwise.

Browsers' ``Origin`` is checked on the endpoints that start calls, with or without a secret:
the same origin, or one of ``allowed_origins`` (``*``: any).
"""

from __future__ import annotations

import secrets
import socket
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import jwt
from aiohttp import web

from bridge.core.errors import BadRequest
from bridge.providers import routed
from bridge.server.config import Settings

ALGORITHM = "HS256"
ISSUER = "rtc-bridge"
LEEWAY_S = 5  # clock skew allowed between the minting host and this one


@dataclass(frozen=True, slots=True)
class Grant:
    """What a request may do: the verified token's claims (or everything, without auth)."""

    subject: str  # the token's owner id: calls it starts belong to it
    admin: bool = False
    providers: tuple[str, ...] | None = None  # None: any
    models: tuple[str, ...] | None = None
    max_duration: float | None = None  # seconds a call may last
    max_sessions: int | None = None  # concurrent calls
    budget_usd: float | None = None  # for all its calls together
    expires_at: float | None = None

    def allows(self, provider: str, model: str | None) -> None:
        """:class:`BadRequest` (403) unless this token may use ``provider``/``model``."""
        if self.providers is not None and routed(provider, model) not in self.providers:
            if provider not in self.providers:
                raise _forbidden(f"this token may not use the provider {provider!r}", "not_granted")
        if self.models is not None and (model or "") not in self.models:
            raise _forbidden(f"this token may not use the model {model!r}", "not_granted")

    def owns(self, owner: str | None) -> bool:
        return self.admin or (owner is not None and secrets.compare_digest(owner, self.subject))


OPEN = Grant(subject="anonymous", admin=True)
INTERNAL = Grant(subject="internal", admin=True)  # a sibling worker over its private socket


def mint(
    secret: str,
    ttl: float,
    *,
    subject: str | None = None,
    admin: bool = False,
    providers: tuple[str, ...] | None = None,
    models: tuple[str, ...] | None = None,
    max_duration: float | None = None,
    max_sessions: int | None = None,
    budget_usd: float | None = None,
    now: float | None = None,
) -> str:
    """A signed token valid for ``ttl`` seconds (a negative ``ttl`` makes an expired one)."""
    issued = int(now if now is not None else time.time())
    grants: dict[str, Any] = {}
    if admin:
        grants["admin"] = True
    for name, value in (
        ("providers", providers),
        ("models", models),
        ("max_duration", max_duration),
        ("max_sessions", max_sessions),
        ("budget_usd", budget_usd),
    ):
        if value is not None:
            grants[name] = list(value) if isinstance(value, tuple) else value
    claims = {
        "iss": ISSUER,
        "sub": subject or f"tok_{secrets.token_urlsafe(9)}",
        "iat": issued,
        "exp": issued + int(ttl),
        "grants": grants,
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify(secret: str, token: str, max_ttl: float, now: float | None = None) -> Grant:
    """The grant a token carries; :class:`BadRequest` (401) when it is not one of ours, is
    expired, or lives longer than ``max_ttl``."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            options={"require": ["exp", "iat", "sub", "iss"]},
            leeway=LEEWAY_S,
        )
    except jwt.ExpiredSignatureError:
        raise _unauthorized("the access token has expired", "token_expired") from None
    except jwt.PyJWTError:
        raise _unauthorized("the access token is not valid", "invalid_token") from None
    if claims["exp"] - claims["iat"] > max_ttl:
        raise _unauthorized(
            f"the access token lives longer than the {max_ttl:g} s this bridge accepts",
            "invalid_token",
        )
    if now is not None and claims["exp"] < now - LEEWAY_S:
        raise _unauthorized("the access token has expired", "token_expired")
    grants = claims.get("grants") if isinstance(claims.get("grants"), dict) else {}
    assert isinstance(grants, dict)
    try:
        return Grant(
            subject=str(claims["sub"])[:128],
            admin=grants.get("admin") is True,
            providers=_strings(grants.get("providers")),
            models=_strings(grants.get("models")),
            max_duration=_number(grants.get("max_duration")),
            max_sessions=_whole(grants.get("max_sessions")),
            budget_usd=_number(grants.get("budget_usd")),
            expires_at=float(claims["exp"]),
        )
    except (TypeError, ValueError):
        raise _unauthorized("the access token's grants are malformed", "invalid_token") from None


def authenticate(request: web.Request, settings: Settings) -> Grant:
    """The grant of this request: everything without a secret (or for a sibling worker),
    else the verified bearer token's."""
    if not settings.auth_secret:
        return OPEN
    token = bearer_token(request)
    if token is None and _from_sibling(request):
        return INTERNAL  # a sibling asking for its own (a client's request carries its token)
    if token is None:
        raise _unauthorized("an access token is required (Authorization: Bearer)", "unauthorized")
    return verify(settings.auth_secret, token, settings.token_max_ttl)


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    token = request.query.get("token")
    return token or None


def check_origin(request: web.Request, settings: Settings) -> None:
    """Browsers may start calls from the bridge's own origin or an allowed one (403)."""
    origin = request.headers.get("Origin")
    if origin is None or "*" in settings.allowed_origins:
        return
    if origin.rstrip("/") in {o.rstrip("/") for o in settings.allowed_origins}:
        return
    if not settings.allowed_origins and urlsplit(origin).netloc == request.host:
        return
    raise _forbidden(f"requests from {origin[:80]!r} are not allowed", "origin_not_allowed")


def _from_sibling(request: web.Request) -> bool:
    """Requests that came over a worker's private Unix socket (only siblings reach it)."""
    transport = request.transport
    if transport is None:
        return False
    sock = transport.get_extra_info("socket")
    return sock is not None and sock.family == socket.AF_UNIX


def _strings(value: object) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TypeError("expected a list of strings")
    return tuple(value)


def _number(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError("expected a positive number")
    return float(value)


def _whole(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError("expected a positive integer")
    return value


def _unauthorized(message: str, code: str) -> BadRequest:
    return BadRequest(message, code=code, status=401)


def _forbidden(message: str, code: str) -> BadRequest:
    return BadRequest(message, code=code, status=403)
