"""TURN credentials (coturn's TURN REST API) and the ICE diagnostics.

coturn with ``use-auth-secret`` and ``static-auth-secret=<secret>`` accepts any username of the
form ``"<expiry unix time>:<id>"`` whose password is ``base64(HMAC-SHA1(secret, username))``,
until the expiry time passes. The bridge holds the secret (``BRIDGE_TURN_SECRET``) and hands out
short-lived credentials; the secret itself never leaves it.

Routes (:func:`add_routes`):

* ``GET /ice-servers``: ``{"iceServers": [...], "ttl": seconds}`` in the shape browsers take for
  ``RTCConfiguration.iceServers``: one entry with the ``turn_urls`` and freshly minted
  credentials, and the STUN URLs of ``ice_servers`` without credentials. Never cached.
* ``GET /diag/ice``: the host candidates the bridge gathers (address, scope: loopback, private,
  link-local or public), the STUN/TURN servers configured, and ``warnings`` when clients
  elsewhere could not reach the bridge. ``?probe=1`` also asks each STUN server for the
  bridge's reflexive address and allocates a relay on each TURN server with minted
  credentials (up to 5 s), which shows a wrong secret or an unreachable server.

:func:`whip_link_headers` gives the RFC 9725 ``Link`` header values that offer the same servers
to WHIP clients, and :func:`bridge_servers` the credentials the bridge's own peer connections
use (see :class:`bridge.transports.webrtc.peer.WebRTCOptions`).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import re
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import aioice
from aiohttp import web
from aioice import stun
from aioice.turn import create_turn_endpoint
from aiortc.rtcicetransport import parse_stun_turn_uri

from bridge.core.errors import BadRequest
from bridge.server.auth import authenticate
from bridge.server.config import Settings
from bridge.server.keys import SETTINGS
from bridge.transports.webrtc.ice import IceServer

# Set by an authentication layer to name the client in its TURN username (``<expiry>:<id>``);
# a random id otherwise.
USER_KEY = "turn_user"
PROBE_TIMEOUT_S = 5.0  # what aioice waits for STUN/TURN while gathering
NO_STORE = {"Cache-Control": "no-store"}
_UNSAFE_ID = re.compile(r"[^A-Za-z0-9._@+-]")
_UNSAFE_LINK = re.compile(r"[\x00-\x20\x7f<>]")


# -- credentials ---------------------------------------------------------------------------------


def credentials(secret: str, ttl: int, id: str, now: float | None = None) -> tuple[str, str]:
    """coturn REST credentials: ``("<expiry>:<id>", base64(HMAC-SHA1(secret, username)))``."""
    if not secret:
        raise ValueError("a TURN secret is needed to mint credentials")
    expiry = int(time.time() if now is None else now) + int(ttl)
    username = f"{expiry}:{_safe_id(id)}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")


def servers(
    secret: str,
    urls: Sequence[str],
    ttl: int,
    id: str,
    *,
    stun_urls: Sequence[str] = (),
    now: float | None = None,
) -> list[IceServer]:
    """One TURN entry for ``urls`` with fresh credentials, then one entry per STUN URL."""
    entries: list[IceServer] = []
    if urls:
        username, credential = credentials(secret, ttl, id, now)
        entries.append(IceServer(tuple(urls), username, credential))
    entries += [IceServer((url,)) for url in stun_urls]
    return entries


def mint(
    secret: str,
    urls: Sequence[str],
    ttl: int,
    id: str,
    *,
    stun_urls: Sequence[str] = (),
    now: float | None = None,
) -> list[dict[str, Any]]:
    """:func:`servers` as RTCIceServer JSON: ``[{"urls": [...], "username", "credential"},
    {"urls": ["stun:..."]}, ...]``."""
    return [s.to_json() for s in servers(secret, urls, ttl, id, stun_urls=stun_urls, now=now)]


def stun_urls(settings: Settings) -> tuple[str, ...]:
    """The STUN URLs of ``ice_servers`` (TURN URLs there have no credentials to give)."""
    return tuple(url for url in settings.ice_servers if url.startswith(("stun:", "stuns:")))


def client_servers(settings: Settings, id: str) -> list[IceServer]:
    """What a client should use: minted TURN credentials and the STUN URLs."""
    return servers(
        settings.turn_secret,
        settings.turn_urls,
        settings.turn_ttl,
        id,
        stun_urls=stun_urls(settings),
    )


def bridge_servers(settings: Settings) -> tuple[IceServer, ...]:
    """TURN credentials for one of the bridge's own peer connections (empty without TURN).

    They need to last only until the relay is allocated (while the answer is made): coturn 4.6
    checks the expiry when an allocation is created, and refreshes, permissions and channel
    bindings of a live allocation go on being accepted after it (measured), so a call outlives
    its credentials.
    """
    if not settings.turn_urls or not settings.turn_secret:
        return ()
    return tuple(servers(settings.turn_secret, settings.turn_urls, settings.turn_ttl, "bridge"))


def whip_link_headers(entries: Iterable[IceServer | Mapping[str, Any]]) -> list[str]:
    """RFC 9725 section 4.6 ``Link`` header values, one per URL, e.g. ``<turn:turn.example.net
    ?transport=udp>; rel="ice-server"; username="1700000000:ab"; credential="...=";
    credential-type="password"`` (STUN URLs get only ``rel``). Add each as its own ``Link``
    header of the WHIP ``201`` response (``headers.add("Link", value)``)."""
    values = []
    for entry in entries:
        server = entry if isinstance(entry, IceServer) else _from_json(entry)
        for url in server.urls:
            if _UNSAFE_LINK.search(url):
                raise ValueError(f"an ICE server URL cannot go in a Link header: {url[:80]!r}")
            value = f'<{url}>; rel="ice-server"'
            if server.username is not None and server.credential is not None:
                value += (
                    f"; username={_quoted(server.username)}"
                    f"; credential={_quoted(server.credential)}"
                    '; credential-type="password"'
                )
            values.append(value)
    return values


def _from_json(entry: Mapping[str, Any]) -> IceServer:
    urls = entry["urls"]
    return IceServer(
        (urls,) if isinstance(urls, str) else tuple(urls),
        entry.get("username"),
        entry.get("credential"),
    )


def _quoted(value: str) -> str:
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise ValueError("a Link header parameter cannot hold control characters")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _safe_id(id: str) -> str:
    """An id that keeps the username ``<expiry>:<id>`` unambiguous (no ``:``), short."""
    return _UNSAFE_ID.sub("_", id)[:64] or "anonymous"


# -- routes --------------------------------------------------------------------------------------


def add_routes(app: web.Application) -> None:
    app.router.add_get("/ice-servers", get_ice_servers)
    app.router.add_get("/diag/ice", get_diag_ice)


async def get_ice_servers(request: web.Request) -> web.Response:
    """Credentials for a client: any valid access token may have them (with a secret)."""
    settings = request.app[SETTINGS]
    grant = authenticate(request, settings)
    user = request.get(USER_KEY) or (grant.subject if settings.auth_secret else None)
    id = user if isinstance(user, str) and user else secrets.token_hex(6)
    body = {
        "iceServers": [s.to_json() for s in client_servers(settings, id)],
        "ttl": settings.turn_ttl,
    }
    return web.json_response(body, headers=NO_STORE)


async def get_diag_ice(request: web.Request) -> web.Response:
    """The bridge's network as clients would meet it: an admin token's business (it binds
    sockets and, with ``probe``, reaches the TURN and STUN servers)."""
    if not authenticate(request, request.app[SETTINGS]).admin:
        raise BadRequest("/diag/ice needs an admin token", code="not_owner", status=403)
    probe = request.query.get("probe", "0").lower()
    if probe not in ("0", "1", "true", "false"):
        raise BadRequest("'probe' must be 1 or 0", code="invalid_probe")
    body = await diagnose(request.app[SETTINGS], probe=probe in ("1", "true"))
    return web.json_response(body, headers=NO_STORE)


# -- diagnostics ---------------------------------------------------------------------------------


def scope(address: str) -> str:
    """loopback, link-local, private (any address that is not globally routable) or public."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    return "public" if ip.is_global else "private"


async def host_candidates() -> list[dict[str, Any]]:
    """The host candidates a new peer connection of this process would offer: aioice gathers
    them as aiortc does (on ``ice_addresses``, or every interface but loopback)."""
    connection = aioice.Connection(ice_controlling=False)
    try:
        await connection.gather_candidates()
        return [_candidate(c) for c in connection.local_candidates]
    finally:
        await connection.close()


def _candidate(c: aioice.Candidate) -> dict[str, Any]:
    ip = ipaddress.ip_address(c.host.split("%", 1)[0])
    return {
        "address": c.host,
        "port": c.port,
        "protocol": c.transport,
        "type": c.type,
        "family": f"ipv{ip.version}",
        "scope": scope(c.host),
    }


def _bridge_uses(urls: Sequence[str], scheme: str) -> str | None:
    """The one URL of ``scheme`` (stun or turn) aiortc takes from ``urls``, if any."""
    for url in urls:
        try:
            parsed = parse_stun_turn_uri(url)
        except ValueError:
            continue
        if scheme == "stun" and parsed["scheme"] == "stun":
            return url
        if scheme == "turn" and (
            (parsed["scheme"] == "turn" and parsed["transport"] in ("udp", "tcp"))
            or (parsed["scheme"] == "turns" and parsed["transport"] == "tcp")
        ):
            return url
    return None


async def diagnose(settings: Settings, probe: bool = False) -> dict[str, Any]:
    candidates = await host_candidates()
    stuns = stun_urls(settings)
    plain_turns = [u for u in settings.ice_servers if u.startswith(("turn:", "turns:"))]
    scopes = {c["scope"] for c in candidates}
    public = "public" in scopes
    has_turn = bool(settings.turn_urls and settings.turn_secret)
    warnings: list[str] = []
    if not candidates:
        warnings.append(
            "no host candidate could be gathered: check ice_addresses "
            f"({', '.join(settings.ice_addresses) or 'all interfaces'})"
        )
    elif scopes == {"loopback"}:
        warnings.append("only loopback candidates: only clients on this machine can connect")
    if candidates and not public and not has_turn:
        if stuns and scopes - {"loopback"}:
            warnings.append(
                "no public address and no TURN: clients elsewhere depend on the STUN "
                "(server-reflexive) address through this host's NAT; clients behind symmetric "
                "NATs or UDP-blocking firewalls need TURN (turn_urls)"
            )
        else:
            warnings.append(
                "no candidate is reachable from outside: only loopback/private addresses and "
                "no TURN (set ice_addresses to a public address, or turn_urls)"
            )
    for url in plain_turns:
        warnings.append(
            f"ice_servers lists {url} without credentials, which neither the bridge nor "
            "clients can use: put it in turn_urls with BRIDGE_TURN_SECRET"
        )
    if len(stuns) > 1:
        warnings.append(
            f"the bridge itself uses only the first STUN URL ({stuns[0]}); the others go to "
            "clients only"
        )
    bridge_turn = _bridge_uses(settings.turn_urls, "turn")
    if settings.turn_urls and bridge_turn is None:
        warnings.append(
            "the bridge cannot use any of turn_urls itself (aiortc takes turn: over udp or tcp "
            "and turns: over tcp); clients can"
        )
    public_host = urlsplit(settings.public_url).hostname if settings.public_url else None
    if public_host and scopes == {"loopback"} and not _is_loopback_name(public_host):
        warnings.append(
            f"public_url names {public_host}, but every ICE candidate is a loopback address"
        )
    body: dict[str, Any] = {
        "ice_addresses": list(settings.ice_addresses),
        "candidates": candidates,
        "stun": {
            "configured": bool(stuns),
            "urls": list(stuns),
            "used_by_bridge": _bridge_uses(stuns, "stun"),
        },
        "turn": {
            "configured": has_turn,
            "urls": list(settings.turn_urls),
            "used_by_bridge": bridge_turn,
            "ttl": settings.turn_ttl,
        },
        "reachable_from_outside": public or has_turn,
    }
    if probe:
        body["probe"] = await _probe(settings, stuns)
        for result in body["probe"]["stun"] + body["probe"]["turn"]:
            if not result["ok"]:
                warnings.append(f"{result['url']}: {result['error']}")
    body["warnings"] = warnings
    return body


def _is_loopback_name(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


async def _probe(settings: Settings, stuns: Sequence[str]) -> dict[str, Any]:
    turns = []
    if settings.turn_urls and settings.turn_secret:
        username, credential = credentials(
            settings.turn_secret, settings.turn_ttl, "diag-" + secrets.token_hex(3)
        )
        turns = [probe_turn(url, username, credential) for url in settings.turn_urls]
    results = await asyncio.gather(*(probe_stun(url) for url in stuns), *turns)
    return {"stun": list(results[: len(stuns)]), "turn": list(results[len(stuns) :])}


async def probe_stun(url: str) -> dict[str, Any]:
    """Ask a STUN server for this host's reflexive addresses, as the bridge's peers would."""
    timeout = PROBE_TIMEOUT_S
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        parsed = parse_stun_turn_uri(url)
    except ValueError as exc:
        return {"url": url, "ok": False, "error": str(exc)}
    if parsed["scheme"] != "stun":
        return {"url": url, "ok": False, "error": "aiortc supports stun: (UDP) only"}
    connection = aioice.Connection(
        ice_controlling=False, stun_server=(parsed["host"], parsed["port"])
    )
    try:
        async with asyncio.timeout(timeout + 1):
            await connection.gather_candidates()
        found = [c for c in connection.local_candidates if c.type == "srflx"]
    except (OSError, TimeoutError) as exc:
        return {"url": url, "ok": False, "error": str(exc) or type(exc).__name__}
    finally:
        await connection.close()
    ms = round((loop.time() - started) * 1000, 1)
    if not found:
        return {"url": url, "ok": False, "ms": ms, "error": f"no answer within {timeout:g} s"}
    return {"url": url, "ok": True, "ms": ms, "addresses": sorted({c.host for c in found})}


class _ProbeProtocol(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.closed = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


async def probe_turn(url: str, username: str, credential: str) -> dict[str, Any]:
    """Allocate a relay on a TURN server (and release it): the credentials and the server
    work, or the error says why not."""
    timeout = PROBE_TIMEOUT_S
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        parsed = parse_stun_turn_uri(url)
    except ValueError as exc:
        return {"url": url, "ok": False, "error": str(exc)}
    if parsed["transport"] not in ("udp", "tcp") or (
        parsed["scheme"] == "turns" and parsed["transport"] != "tcp"
    ):
        return {"url": url, "ok": False, "error": "aiortc supports turns: over tcp only"}
    try:
        async with asyncio.timeout(timeout):
            transport, protocol = await create_turn_endpoint(
                _ProbeProtocol,
                server_addr=(parsed["host"], parsed["port"]),
                username=username,
                password=credential,
                ssl=parsed["scheme"] == "turns",
                transport=parsed["transport"],
            )
    except TimeoutError:
        return {"url": url, "ok": False, "error": f"no answer within {timeout:g} s"}
    except (stun.TransactionError, OSError) as exc:
        return {"url": url, "ok": False, "error": str(exc) or type(exc).__name__}
    ms = round((loop.time() - started) * 1000, 1)
    relayed = transport.get_extra_info("sockname")
    mapped = transport.get_extra_info("related_address")
    transport.close()  # deletes the allocation
    try:
        async with asyncio.timeout(2.0):
            await protocol.closed
    except TimeoutError:
        pass
    return {
        "url": url,
        "ok": True,
        "ms": ms,
        "relayed_address": f"{relayed[0]}:{relayed[1]}",
        "mapped_address": f"{mapped[0]}:{mapped[1]}" if mapped else None,
    }
