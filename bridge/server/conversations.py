"""Starting a conversation for any transport: the provider, the session it starts from, the
server's locks, an id that names the worker; counted against capacity by the caller."""

from __future__ import annotations

import secrets
from dataclasses import replace

from aiohttp import web

from bridge.core.conversation import Conversation
from bridge.core.errors import BadRequest
from bridge.core.session_config import SessionConfig
from bridge.providers import spec_of
from bridge.server.config import Settings
from bridge.server.keys import CLUSTER, ENGINE, REGISTRY, SETTINGS


def new_conversation(
    app: web.Application, provider: str | None, model: str | None, session: object
) -> Conversation:
    """A new conversation (not yet started or registered); :class:`BadRequest` when the
    bridge is full, the provider unknown or unusable, or ``session`` invalid."""
    settings, engine = app[SETTINGS], app[ENGINE]
    app[REGISTRY].check_capacity()
    spec = spec_of(provider or settings.default_provider)
    config = session_config(settings, spec.name, session)
    return Conversation(
        session_id=new_session_id(app),
        provider=engine.create_provider(
            spec.name, model or default_model(settings, spec.name), config
        ),
        config=config,
        engine=engine,
        connect_timeout=settings.provider_connect_timeout,
        locked=locked_fields(settings),
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
    return base.merged(update if update is not None else {})


def new_session_id(app: web.Application) -> str:
    token = secrets.token_urlsafe(12)
    cluster = app.get(CLUSTER)
    return cluster.session_id(token) if cluster is not None else token
