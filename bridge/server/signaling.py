"""HTTP signaling: ``POST /offer`` (JSON), WHIP (RFC 9725) and the session resources.

Every handler validates before it creates anything, and a session that fails to start closes
itself, so a bad request never leaves a peer connection or a registry entry behind.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from bridge.core.conversation import CloseReason, Conversation
from bridge.core.errors import BadRequest
from bridge.providers import PROVIDERS
from bridge.server import turn
from bridge.server.auth import authenticate
from bridge.server.config import Settings
from bridge.server.conversations import admit, default_model, new_conversation
from bridge.server.keys import CLUSTER, ENGINE, FRAME_CLOCK, METRICS, REGISTRY, REPLICAS, SETTINGS
from bridge.transports.gateway import add_routes as add_gateway_routes
from bridge.transports.twilio import add_routes as add_twilio_routes
from bridge.transports.webrtc.pacing import FrameClock
from bridge.transports.webrtc.peer import WebRTCCall, WebRTCOptions
from bridge.transports.webrtc.sdp import check_offer

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
STATIC_DEFAULT = Path(__file__).resolve().parents[2] / "static"
WHIP_CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, If-Match",
    "Access-Control-Expose-Headers": "Location, ETag, Link",
}


def add_routes(app: web.Application) -> None:
    app.router.add_post("/offer", post_offer)
    app.router.add_post("/whip", post_whip)
    app.router.add_route("OPTIONS", "/whip", options_whip)
    app.router.add_delete("/whip/{id}", delete_session)
    app.router.add_route("OPTIONS", "/whip/{id}", options_whip)
    app.router.add_get("/whip/{id}", get_session)
    app.router.add_patch("/whip/{id}", patch_whip)
    app.router.add_get("/sessions", list_sessions)
    app.router.add_get("/sessions/{id}", get_session)
    app.router.add_delete("/sessions/{id}", delete_session)
    app.router.add_get("/providers", list_providers)
    turn.add_routes(app)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/stats", stats)
    app.router.add_post("/stats/reset", reset_stats)
    add_twilio_routes(app)
    add_gateway_routes(app)
    app.router.add_get("/", index)
    app.router.add_get("/static/{path:.+}", _static_files(app[SETTINGS].static_dir))


async def read_body(request: web.Request) -> bytes:
    """The request body, within ``body_timeout`` (a client that trickles it is cut off)."""
    limit = request.app[SETTINGS].body_timeout
    try:
        async with asyncio.timeout(limit):
            return await request.read()
    except TimeoutError:
        raise BadRequest(
            f"the request body did not arrive within {limit:g} s",
            code="request_timeout",
            status=408,
        ) from None


async def _read_json(request: web.Request) -> dict[str, Any]:
    if request.content_type not in ("application/json", "text/plain", ""):
        raise BadRequest(
            f"expected application/json, got {request.content_type}",
            code="unsupported_media_type",
            status=415,
        )
    raw = await read_body(request)
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise BadRequest("request body is not valid JSON", code="invalid_json") from None
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object", code="invalid_json")
    return body


def _optional_str(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and (not isinstance(value, str) or not value):
        raise BadRequest(f"'{key}' must be a non-empty string", code=f"invalid_{key}")
    return value


async def _start_session(
    request: web.Request,
    offer_sdp: object,
    provider_name: str | None,
    model: str | None,
    session: object,
    kind: str,
) -> tuple[WebRTCCall, str]:
    app = request.app
    grant = await admit(request)
    check_offer(offer_sdp)
    conversation = new_conversation(
        app, provider_name, model, session, grant=grant, client_ip=request.remote
    )
    settings = app[SETTINGS]
    options = webrtc_options(settings, app[FRAME_CLOCK])
    call = WebRTCCall(conversation, options, kind=kind, metrics=app[METRICS])
    app[REGISTRY].add(conversation)
    answer = await call.start(offer_sdp)
    return call, answer


def webrtc_options(settings: Settings, clock: FrameClock | None = None) -> WebRTCOptions:
    return WebRTCOptions(
        clock=clock,
        opus_complexity=settings.opus_complexity,
        ice_servers=settings.ice_servers,
        turn_servers=turn.bridge_servers(settings),
        connect_timeout=settings.connect_timeout,
        inactivity_timeout=settings.inactivity_timeout,
        max_reply_buffer_ms=settings.max_reply_buffer_ms,
        max_text_chars=settings.max_text_chars,
        fast_path=settings.media_fast_path,
    )


async def post_offer(request: web.Request) -> web.Response:
    """JSON offer in, JSON answer out: the demo page's and the SDK's way in."""
    body = await _read_json(request)
    if "sdp" not in body:
        raise BadRequest("missing 'sdp'", code="invalid_sdp")
    if body.get("type") != "offer":
        raise BadRequest("'type' must be 'offer'", code="invalid_type")
    call, answer = await _start_session(
        request,
        body["sdp"],
        _optional_str(body, "provider"),
        _optional_str(body, "model"),
        body.get("session"),
        kind="webrtc",
    )
    return web.json_response({"sdp": answer, "type": "answer", "session_id": call.id})


async def post_whip(request: web.Request) -> web.Response:
    """WHIP: ``application/sdp`` offer in, ``201 Created`` with the answer and a Location."""
    if request.content_type != "application/sdp":
        raise BadRequest(
            "WHIP offers must be sent as application/sdp",
            code="unsupported_media_type",
            status=415,
        )
    sdp = (await read_body(request)).decode("utf-8", errors="replace")
    query = request.query
    call, answer = await _start_session(
        request,
        sdp,
        query.get("provider") or None,
        query.get("model") or None,
        None,
        kind="whip",
    )
    response = web.Response(
        status=201,
        text=answer,
        content_type="application/sdp",
        headers={"Location": f"/whip/{call.id}", **WHIP_CORS},
    )
    for link in turn.whip_link_headers(turn.client_servers(request.app[SETTINGS], call.id)):
        response.headers.add("Link", link)  # RFC 9725: the ICE servers the client may use
    return response


async def options_whip(request: web.Request) -> web.Response:
    return web.Response(status=204, headers={"Accept-Post": "application/sdp", **WHIP_CORS})


def _session(request: web.Request) -> Conversation:
    """The requested session, if the request's token owns it (or is an admin's)."""
    grant = authenticate(request, request.app[SETTINGS])
    call = request.app[REGISTRY].get(request.match_info["id"])
    if call is None:
        raise BadRequest("no such session", code="not_found", status=404)
    if not grant.owns(call.owner):
        raise BadRequest("this session belongs to another token", code="not_owner", status=403)
    return call


def _elsewhere(request: web.Request) -> int | None:
    """The worker that owns the requested session, when it is not this one."""
    cluster = request.app.get(CLUSTER)
    if cluster is None or request.app[REGISTRY].get(request.match_info["id"]) is not None:
        return None
    owner = cluster.owner(request.match_info["id"])
    return owner if owner is not None and owner != cluster.index else None


def _routed(handler: Handler) -> Handler:
    """Run ``handler`` where the session lives: here, or forwarded to its worker."""

    async def route(request: web.Request) -> web.StreamResponse:
        replicas = request.app.get(REPLICAS)
        if replicas is not None and request.app[REGISTRY].get(request.match_info["id"]) is None:
            replica = await replicas.where(request.match_info["id"])
            if replica is not None:  # another replica holds it
                return await replicas.forward(request, replica, await read_body(request))
        owner = _elsewhere(request)
        if owner is not None:
            return await request.app[CLUSTER].forward(request, owner, await read_body(request))
        return await handler(request)

    return route


@_routed
async def get_session(request: web.Request) -> web.StreamResponse:
    return web.json_response(_session(request).describe())


@_routed
async def delete_session(request: web.Request) -> web.StreamResponse:
    await _session(request).close(CloseReason.DELETED)
    return web.json_response({"status": "closed"}, headers=WHIP_CORS)


@_routed
async def patch_whip(request: web.Request) -> web.StreamResponse:
    _session(request)
    raise BadRequest(
        "trickle ICE and ICE restart are not supported: the answer carries every candidate",
        code="not_supported",
        status=405,
    )


async def list_sessions(request: web.Request) -> web.Response:
    """Every worker's sessions (an admin token's view), or the token's own."""
    grant = authenticate(request, request.app[SETTINGS])
    sessions = [s.describe() for s in request.app[REGISTRY]]
    cluster = request.app.get(CLUSTER)
    if cluster is not None and "local" not in request.query:
        for answer in await cluster.gather("/sessions?local=1"):
            sessions.extend(answer.get("sessions", []))
    replicas = request.app.get(REPLICAS)
    if replicas is not None and "local" not in request.query:
        sessions.extend(await replicas.other_sessions())
    if not grant.admin:
        sessions = [s for s in sessions if grant.owns(s.get("owner"))]
    return web.json_response({"sessions": sessions})


async def list_providers(request: web.Request) -> web.Response:
    settings, engine = request.app[SETTINGS], request.app[ENGINE]
    default = settings.default_provider
    items = []
    for spec in PROVIDERS.values():
        options = engine.options(spec.name)
        reason = spec.unavailable_reason(options)
        items.append(
            {
                "name": spec.name,
                "available": reason is None,
                "reason": reason,
                "default": spec.name == default,
                "default_model": spec.default_model,
                "models": spec.models(),
                "warnings": spec.notes(default_model(settings, spec.name), options),
                "voices": list(spec.voices),
                "default_voice": spec.default_voice,
            }
        )
    return web.json_response({"providers": items})


async def stats(request: web.Request) -> web.Response:
    """Audio-path latency and punctuality of this process, with its CPU time and memory;
    with several workers, ``workers`` lists each one's."""
    mine = {
        "sessions": len(request.app[REGISTRY]),
        "asyncio_tasks": len(asyncio.all_tasks()),  # a leak shows here first
        **request.app[METRICS].snapshot(),
    }
    cluster = request.app.get(CLUSTER)
    if cluster is not None and "local" not in request.query:
        mine["workers"] = [dict(mine), *await cluster.gather("/stats?local=1")]
    return web.json_response(mine)


async def reset_stats(request: web.Request) -> web.Response:
    request.app[METRICS].reset()
    cluster = request.app.get(CLUSTER)
    if cluster is not None and "local" not in request.query:
        await cluster.gather_post("/stats/reset?local=1")
    return web.json_response({"status": "reset"})


async def healthz(request: web.Request) -> web.Response:
    """Alive, with the number of calls: this worker's and, with several, all workers' (a
    worker that does not answer is listed as unreachable, and the service is ``degraded``)."""
    mine = len(request.app[REGISTRY])
    cluster = request.app.get(CLUSTER)
    if cluster is None or "local" in request.query:
        return web.json_response({"status": "ok", "sessions": mine})
    answers = await cluster.gather("/healthz?local=1")
    workers = len(cluster.sockets)
    total = mine + sum(int(a.get("sessions", 0)) for a in answers if isinstance(a, dict))
    return web.json_response(
        {
            "status": "ok" if len(answers) == workers - 1 else "degraded",
            "sessions": total,
            "workers": workers,
            "workers_answering": len(answers) + 1,
        }
    )


async def index(request: web.Request) -> web.StreamResponse:
    static_dir = Path(request.app[SETTINGS].static_dir or STATIC_DEFAULT)
    page = static_dir / "index.html"
    if not page.is_file():
        raise BadRequest(f"demo page not found in {static_dir}", code="not_found", status=404)
    return web.FileResponse(page)


def _static_files(static_dir: str) -> Handler:
    """The demo page's files, listed once at startup: any other path (missing, outside the
    folder) is a JSON 404, and no request touches the file system to find out."""
    folder = Path(static_dir or STATIC_DEFAULT).resolve()
    files = {
        path.relative_to(folder).as_posix(): path
        for path in (folder.rglob("*") if folder.is_dir() else [])
        if path.is_file()
    }

    async def static_file(request: web.Request) -> web.StreamResponse:
        name = request.match_info["path"]
        if name not in files:
            raise BadRequest(f"no such file: {name[:80]!r}", code="not_found", status=404)
        return web.FileResponse(files[name])

    return static_file
