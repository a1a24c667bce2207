"""``create_app(settings)``: the aiohttp application that is the bridge's HTTP face."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from bridge.core.budget import LocalLedger
from bridge.core.engine import Engine
from bridge.core.errors import BridgeError
from bridge.core.metrics import Metrics
from bridge.core.redact import install_log_redaction, redact
from bridge.providers import PROVIDERS
from bridge.server import prometheus, signaling
from bridge.server import replicas as replicas_module
from bridge.server.cluster import Cluster
from bridge.server.config import Settings
from bridge.server.conversations import default_model
from bridge.server.keys import (
    CLUSTER,
    ENGINE,
    FRAME_CLOCK,
    LEDGER,
    METRICS,
    REGISTRY,
    REPLICAS,
    SETTINGS,
)
from bridge.server.registry import SessionRegistry
from bridge.transports.webrtc import datachannel, dtls
from bridge.transports.webrtc.ice import restrict_host_addresses
from bridge.transports.webrtc.pacing import FrameClock

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_body(code: str, message: str, status: int) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error leaves as ``{"error": {"code", "message"}}`` with a fitting status."""
    try:
        return await handler(request)
    except BridgeError as exc:
        status = getattr(exc, "status", 500)
        message = redact(exc.message, request.app[ENGINE].secrets())
        response = error_body(exc.code, message, status)
        if status in (429, 503):
            response.headers["Retry-After"] = "5"
        if status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="rtc-bridge"'
        return response
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[SETTINGS].max_body_bytes
        return error_body("body_too_large", f"request body is over {limit} bytes", 413)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = exc.reason.lower().replace(" ", "_")
        response = error_body(code, exc.text or exc.reason, exc.status)
        for header in ("Allow", "Retry-After"):
            if header in exc.headers:
                response.headers[header] = exc.headers[header]
        return response
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_body("internal_error", "internal error", 500)


async def _close_sessions(app: web.Application) -> AsyncIterator[None]:
    yield
    await app[REGISTRY].close_all("server_shutdown")


async def _share_state(app: web.Application) -> AsyncIterator[None]:
    """With ``redis_url``: this replica's calls, limits and budgets shared with the others."""
    async for replicas in replicas_module.connect(app[SETTINGS]):
        app[REPLICAS] = replicas
        app[LEDGER] = replicas.ledger
        app[REGISTRY].listeners.append(replicas.listener)
        yield
        await replicas.close([s.id for s in app[REGISTRY]])


def create_app(settings: Settings | None = None, cluster: Cluster | None = None) -> web.Application:
    """A bridge application; it owns its sessions and closes them all on cleanup.

    ``cluster`` is given when this is one of several worker processes (:mod:`bridge.cluster`).
    """
    settings = settings if settings is not None else Settings.from_sources()
    restrict_host_addresses(settings.ice_addresses)
    dtls.install()
    datachannel.install_guard()
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[json_errors],
        # A connection that never completes a request is closed after header_timeout (aiohttp
        # counts it from the connection's start); unread bodies are not waited for long.
        handler_args={"keepalive_timeout": settings.header_timeout, "lingering_time": 1.0},
    )
    app[SETTINGS] = settings
    app[ENGINE] = Engine(settings.provider_options())
    install_log_redaction(
        [*app[ENGINE].secrets(), settings.auth_secret, settings.turn_secret,
         settings.twilio_auth_token]
    )  # fmt: skip
    app[REGISTRY] = SessionRegistry(settings.max_sessions)
    app[METRICS] = Metrics()
    app[FRAME_CLOCK] = FrameClock(settings.pacing_slots)
    app[LEDGER] = LocalLedger()
    if cluster is not None:
        app[CLUSTER] = cluster
    if settings.redis_url:
        app.cleanup_ctx.append(_share_state)  # set up before, torn down after the sessions
    app.cleanup_ctx.append(_close_sessions)
    signaling.add_routes(app)
    prometheus.install(app)
    for spec in PROVIDERS.values():
        model = default_model(settings, spec.name)
        for note in spec.notes(model, app[ENGINE].options(spec.name)):
            log.warning("%s: %s", spec.name, note)
    return app
