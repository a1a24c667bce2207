"""Starting a conversation for any transport: the provider, the session it starts from, the
server's locks, an id that names the worker; counted against capacity by the caller."""

from __future__ import annotations

import secrets
from dataclasses import replace

from aiohttp import web

from bridge.core.budget import Budget, LocalLedger
from bridge.core.conversation import Conversation
from bridge.core.errors import BadRequest
from bridge.core.session_config import SessionConfig
from bridge.providers import check_voice, spec_of
from bridge.server.auth import INTERNAL, OPEN, Grant, authenticate, check_origin
from bridge.server.config import Settings
from bridge.server.keys import CLUSTER, ENGINE, LEDGER, REGISTRY, REPLICAS, SETTINGS
from bridge.server.registry import SessionRegistry


def new_conversation(
    app: web.Application,
    provider: str | None,
    model: str | None,
    session: object,
    *,
    grant: Grant = OPEN,
    client_ip: str | None = None,
) -> Conversation:
    """A new conversation (not yet started or registered) for ``grant``'s holder;
    :class:`BadRequest` when the bridge, the client's address or the token is at its limit,
    the token may not use the provider, the provider is unknown or unusable, or ``session``
    is invalid."""
    settings, engine = app[SETTINGS], app[ENGINE]
    registry = app[REGISTRY]
    registry.check_capacity()
    spec = spec_of(provider or settings.default_provider)
    chosen_model = model or default_model(settings, spec.name)
    grant.allows(spec.name, chosen_model)
    _check_limits(settings, registry, grant, client_ip)
    config = session_config(settings, spec.name, session)
    conversation = Conversation(
        session_id=new_session_id(app),
        provider=engine.create_provider(spec.name, chosen_model, config),
        config=config,
        engine=engine,
        connect_timeout=settings.provider_connect_timeout,
        locked=locked_fields(settings),
    )
    conversation.owner = grant.subject
    conversation.client_ip = client_ip
    durations = [d for d in (settings.max_call_duration, grant.max_duration) if d]
    conversation.max_duration = min(durations) if durations else None
    if settings.session_budget_usd > 0:
        ledger = LocalLedger()
        conversation.budgets.append(Budget(conversation.id, settings.session_budget_usd, ledger))
    if grant.budget_usd is not None:
        key = f"token:{grant.subject}"
        conversation.budgets.append(Budget(key, grant.budget_usd, app[LEDGER], name="token"))
    return conversation


def _check_limits(
    settings: Settings, registry: SessionRegistry, grant: Grant, client_ip: str | None
) -> None:
    """Concurrent calls per client address and per access token (HTTP 429)."""
    live = list(registry)
    if client_ip and settings.max_sessions_per_ip:
        if sum(1 for s in live if s.client_ip == client_ip) >= settings.max_sessions_per_ip:
            raise BadRequest(
                f"this address has {settings.max_sessions_per_ip} calls already",
                code="too_many_sessions",
                status=429,
            )
    if grant in (OPEN, INTERNAL):
        return
    limits = [n for n in (settings.max_sessions_per_token, grant.max_sessions) if n]
    if limits and sum(1 for s in live if s.owner == grant.subject) >= min(limits):
        raise BadRequest(
            f"this token has {min(limits)} calls already", code="too_many_sessions", status=429
        )


def default_model(settings: Settings, provider: str) -> str | None:
    """``--model`` applies to the default provider only."""
    return settings.model or None if provider == settings.default_provider else None


def locked_fields(settings: Settings) -> frozenset[str]:
    return frozenset({"instructions"}) if settings.lock_instructions else frozenset()


def session_config(settings: Settings, provider: str, update: object) -> SessionConfig:
    """``session_defaults`` (with the provider's own voice unless they name one), merged with
    a client's ``update``; locked fields may not be in it."""
    base = settings.session_base
    if base.voice is None:
        base = replace(base, voice=spec_of(provider).default_voice or None)
    if isinstance(update, dict) and settings.lock_instructions and "instructions" in update:
        raise BadRequest(
            "session.instructions is set by the server and cannot be changed",
            code="locked_field",
        )
    config = base.merged(update if update is not None else {})
    check_voice(provider, config.voice)
    return config


def new_session_id(app: web.Application) -> str:
    token = secrets.token_urlsafe(12)
    cluster = app.get(CLUSTER)
    return cluster.session_id(token) if cluster is not None else token


async def admit(request: web.Request) -> Grant:
    """The grant of a request that starts a call: a browser's origin is allowed, the token
    (when the bridge has a secret) is valid and, with several replicas, under its limit on
    all of them."""
    settings = request.app[SETTINGS]
    check_origin(request, settings)
    grant = authenticate(request, settings)
    replicas = request.app.get(REPLICAS)
    if replicas is not None:
        await replicas.check_token(grant)
    return grant
