"""Voice providers: the registry of what can be chosen per call."""

from __future__ import annotations

from bridge.core.errors import BadRequest
from bridge.core.session_config import SessionConfig
from bridge.providers import echo, gemini, openai
from bridge.providers.base import Provider, ProviderSpec
from bridge.providers.models import gemini_models, openai_models
from bridge.server.config import Settings

__all__ = ["PROVIDERS", "Provider", "ProviderSpec", "create_provider"]


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
        models=openai_models,
        notes=openai.model_notes,
    ),
    "gemini": ProviderSpec(
        name="gemini",
        default_model=gemini.DEFAULT_MODEL,
        voices=gemini.VOICES,
        default_voice="Puck",
        create=gemini.GeminiProvider,
        unavailable_reason=gemini.unavailable_reason,
        models=gemini_models,
        notes=gemini.model_notes,
    ),
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
