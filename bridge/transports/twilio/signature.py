"""Twilio's request signature (``X-Twilio-Signature``) and the URLs it is computed over.

Twilio signs every webhook with the account's auth token: the base64 of an HMAC-SHA1 over the
full URL it requested, followed by each POST parameter's name and value, sorted by name (and
by value for a repeated name). Behind a proxy the bridge does not see that URL, so it is
rebuilt from ``public_url`` or from the request's ``Host`` and ``X-Forwarded-Proto``. Twilio
does not always sign the port as configured, so the URL is also tried without its port (or
with the default one), as Twilio's own helper libraries do. Comparisons take constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

from aiohttp import web

from bridge.core.errors import BadRequest
from bridge.server.config import Settings

HEADER = "X-Twilio-Signature"
DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}
WEBSOCKET_SCHEMES = {"http": "ws", "https": "wss"}


def compute(token: str, url: str, params: Iterable[tuple[str, str]] = ()) -> str:
    """The signature Twilio sends for a request to ``url`` with these POST parameters."""
    data = url + "".join(name + value for name, value in sorted(set(params)))
    digest = hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def url_variants(url: str) -> list[str]:
    """``url`` as given, and without its port (or with the default one when it has none)."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:  # not a number: only the URL as given can match
        return [url]
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if port is not None:
        other = hostport.rsplit(":", 1)[0]
    elif parts.scheme in DEFAULT_PORTS:
        other = f"{hostport}:{DEFAULT_PORTS[parts.scheme]}"
    else:
        return [url]
    return [url, urlunsplit(parts._replace(netloc=userinfo + at + other))]


def is_valid(token: str, signature: str, url: str, params: Iterable[tuple[str, str]]) -> bool:
    """Whether ``signature`` is Twilio's for ``url`` (with or without its default port)."""
    given = signature.encode("utf-8", errors="replace")
    pairs = list(params)
    return any(
        hmac.compare_digest(compute(token, candidate, pairs).encode(), given)
        for candidate in url_variants(url)
    )


def public_base(request: web.Request, settings: Settings) -> str:
    """The bridge's URL as the outside world calls it, without a trailing slash."""
    if settings.public_url:
        return settings.public_url.rstrip("/")
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    scheme = forwarded if forwarded in ("http", "https") else request.scheme
    return f"{scheme}://{request.host}"


def websocket_base(request: web.Request, settings: Settings) -> str:
    """:func:`public_base` with its scheme made ``ws`` or ``wss``."""
    scheme, rest = public_base(request, settings).split("://", 1)
    return f"{WEBSOCKET_SCHEMES.get(scheme, scheme)}://{rest}"


def check(
    request: web.Request, token: str, url: str, params: Iterable[tuple[str, str]] = ()
) -> None:
    """Refuse (403 ``bad_signature``) a request whose signature is missing or wrong."""
    signature = request.headers.get(HEADER)
    if not signature:
        raise BadRequest(f"missing {HEADER} header", code="bad_signature", status=403)
    if not is_valid(token, signature, url, params):
        raise BadRequest(
            f"{HEADER} does not match this request (check the bridge's public URL)",
            code="bad_signature",
            status=403,
        )


def require_configured(settings: Settings) -> None:
    """A bridge that wants access tokens may not leave Twilio's endpoints open: they take
    Twilio's signature instead of a token, so they need Twilio's auth token (403)."""
    if settings.auth_secret and not settings.twilio_auth_token:
        raise BadRequest(
            "Twilio endpoints need TWILIO_AUTH_TOKEN when the bridge requires access tokens",
            code="twilio_not_configured",
            status=403,
        )
