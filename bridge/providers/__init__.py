"""Voice providers: the registry of what can be chosen per call."""

from __future__ import annotations

from ..config import Settings
from ..errors import BadRequest
from ..session_config import SessionConfig
from . import echo, openai
from .base import Provider, ProviderSpec

__all__ = ["PROVIDERS", "Provider", "ProviderSpec", "create_provider"]


def _refuse(settings: Settings, model: str, config: SessionConfig) -> Provider:
    raise BadRequest("this provider is not part of this build yet", code="provider_unavailable")


def _not_built(name: str) -> ProviderSpec:
    return ProviderSpec(
        name=name,
        default_model="",
        voices=(),
        default_voice="",
        create=_refuse,
        unavailable_reason=lambda _s: f"the {name} provider is not part of this build yet",
    )


PROVIDERS: dict[str, ProviderSpec] = {
    "echo": ProviderSpec(
        name="echo",
        default_model="echo",
        voices=echo.VOICES,
        default_voice="echo",
        create=echo.EchoProvider,
        unavailable_reason=echo.unavailable_reason,
    ),
    "openai": ProviderSpec(
        name="openai",
        default_model=openai.DEFAULT_MODEL,
        voices=openai.VOICES,
        default_voice="marin",
        create=openai.OpenAIProvider,
        unavailable_reason=openai.unavailable_reason,
    ),
    "gemini": _not_built("gemini"),
}


def create_provider(
    settings: Settings, name: str | None, model: str | None, config: SessionConfig
) -> Provider:
    """A new, unconnected provider; :class:`BadRequest` for an unknown or unusable one."""
    name = name or settings.default_provider
    spec = PROVIDERS.get(name)
    if spec is None:
        known = ", ".join(PROVIDERS)
        raise BadRequest(f"unknown provider {name!r} (known: {known})", code="unknown_provider")
    reason = spec.unavailable_reason(settings)
    if reason:
        raise BadRequest(f"provider {name!r} is unavailable: {reason}", code="provider_unavailable")
    return spec.create(settings, model or settings.model or spec.default_model, config)
