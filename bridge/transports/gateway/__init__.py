"""The WebSocket gateway: OpenAI Realtime clients in front of any provider.

``GET {gateway_path}`` (``/realtime``) speaks the envelope framing, ``GET /v1/realtime`` the
raw protocol (point the official SDKs' ``websocket_base_url`` at ``ws://host:port/v1``). The
provider is chosen by ``?model=``: ``gpt-…`` is OpenAI, ``gemini-…`` Gemini, ``echo`` the local
echo, and ``provider/model`` names both (``gemini/gemini-3.8-live``); ``?provider=`` works
too. Every refusal before the upgrade is an HTTP 4xx/503 with a JSON body. With an auth
secret, the access token comes as ``Authorization: Bearer`` (the official SDKs send their
``api_key`` that way: pass the token as the key) or ``?token=``.
"""

from __future__ import annotations

from aiohttp import web

from bridge.core.conversation import CloseReason
from bridge.core.errors import BadRequest
from bridge.providers import PROVIDERS
from bridge.server.conversations import admit, new_conversation
from bridge.server.keys import REGISTRY, SETTINGS
from bridge.transports.gateway.connection import GatewayCall, GatewaySocket
from bridge.transports.gateway.policy import GatewayPolicy
from bridge.transports.gateway.translate import Translator

RAW_PATH = "/v1/realtime"
PREFIXES = {"gpt-": "openai", "gemini": "gemini"}


def add_routes(app: web.Application) -> None:
    app.router.add_get(app[SETTINGS].gateway_path, envelope_gateway)
    app.router.add_get(RAW_PATH, raw_gateway)


async def envelope_gateway(request: web.Request) -> web.StreamResponse:
    return await _serve(request, envelope=True)


async def raw_gateway(request: web.Request) -> web.StreamResponse:
    return await _serve(request, envelope=False)


def pick_provider(provider: str | None, model: str | None) -> tuple[str | None, str | None]:
    """(provider, model) from the query; see the module docstring."""
    if model and "/" in model:
        prefix, _, rest = model.partition("/")
        if prefix in PROVIDERS:
            if provider and provider != prefix:
                raise BadRequest(
                    f"model {model!r} belongs to {prefix}, not {provider}", code="invalid_model"
                )
            return prefix, rest or None
    if model and not provider:
        if model in PROVIDERS:
            return model, None
        for prefix, name in PREFIXES.items():
            if model.startswith(prefix):
                return name, model
    return provider, model


async def _serve(request: web.Request, *, envelope: bool) -> web.StreamResponse:
    app, settings = request.app, request.app[SETTINGS]
    if request.headers.get("Upgrade", "").lower() != "websocket":
        raise BadRequest(
            "this endpoint is a WebSocket: connect with a WebSocket client",
            code="upgrade_required",
            status=426,
        )
    grant = await admit(request)  # the SDKs send the token as their "API key"
    provider, model = pick_provider(
        request.query.get("provider") or None, request.query.get("model") or None
    )
    conversation = new_conversation(
        app, provider, model, None, grant=grant, client_ip=request.remote
    )
    app[REGISTRY].add(conversation)
    ws = GatewaySocket(settings.gateway_max_message_bytes)
    try:
        await ws.prepare(request)
    except Exception:
        await conversation.close(CloseReason.PEER_FAILED)
        raise
    input_format, output_format = conversation.configure_audio("pcm16")
    translator = None
    if getattr(conversation.provider, "raw_listener", "absent") is not None:
        translator = Translator(
            model=conversation.provider.model,
            provider=conversation.provider.name,
            config=conversation.config,
            provider_input=input_format,
            provider_output=output_format,
        )
    policy = GatewayPolicy.of(settings.gateway_events, settings.lock_instructions)
    call = GatewayCall(conversation, ws, envelope=envelope, policy=policy, translator=translator)
    await call.serve()
    return ws
