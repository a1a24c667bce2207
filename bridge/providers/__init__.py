"""Voice providers: the registry of what can be chosen, and how each one is built."""

from __future__ import annotations

from bridge.core.errors import BadRequest
from bridge.core.session_config import SessionConfig
from bridge.providers import echo, gemini, gpt_live, openai
from bridge.providers.base import Provider, ProviderOptions, ProviderSpec
from bridge.providers.models import gemini_models, openai_models

__all__ = [
    "PROVIDERS",
    "Provider",
    "ProviderOptions",
    "ProviderSpec",
    "check_voice",
    "create_provider",
    "routed",
]


PROVIDERS: dict[str, ProviderSpec] = {
    "echo": ProviderSpec(
        name="echo",
        default_model="echo",
        voices=echo.VOICES,
        default_voice="echo",
        options=echo.EchoOptions,
        create=echo.EchoProvider,
        unavailable_reason=echo.unavailable_reason,
    ),
    "openai": ProviderSpec(
        name="openai",
        default_model=openai.DEFAULT_MODEL,
        voices=openai.VOICES,
        default_voice="marin",
        options=openai.OpenAIOptions,
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
        options=gemini.GeminiOptions,
        create=gemini.GeminiProvider,
        unavailable_reason=gemini.unavailable_reason,
        models=gemini_models,
        notes=gemini.model_notes,
    ),
    "gpt-live": ProviderSpec(
        name="gpt-live",
        default_model=gpt_live.DEFAULT_MODEL,
        voices=gpt_live.VOICES,
        default_voice="marin",
        options=gpt_live.GptLiveOptions,
        create=gpt_live.GptLiveProvider,
        unavailable_reason=gpt_live.unavailable_reason,
        models=lambda: [
            {"id": m, "status": "current", "shutdown": None, "replacement": None, "warning": None}
            for m in gpt_live.MODELS
        ],
    ),
}


def routed(name: str, model: str | None) -> str:
    """The provider that serves ``name``/``model``: OpenAI's GPT-Live models speak another
    protocol than its Realtime models, so ``openai/gpt-live-…`` is the ``gpt-live`` provider."""
    if name == "openai" and model and model.startswith("gpt-live"):
        return "gpt-live"
    return name


def check_voice(provider: str, voice: str | None) -> None:
    """:class:`BadRequest` (``invalid_session``) for a voice ``provider`` does not have.
    OpenAI's custom voices (``voice_…`` ids) pass; the provider checks those itself."""
    spec = PROVIDERS.get(provider)
    if voice is None or spec is None or not spec.voices or voice in spec.voices:
        return
    if provider in ("openai", "gpt-live") and voice.startswith("voice_"):
        return
    known = ", ".join(spec.voices)
    raise BadRequest(
        f"{voice[:40]!r} is not a voice of {provider} (known: {known})", code="invalid_session"
    )


def spec_of(name: str) -> ProviderSpec:
    """The provider ``name``; :class:`BadRequest` naming the known ones otherwise."""
    spec = PROVIDERS.get(name)
    if spec is None:
        known = ", ".join(PROVIDERS)
        raise BadRequest(f"unknown provider {name!r} (known: {known})", code="unknown_provider")
    return spec


def create_provider(
    name: str, model: str | None, config: SessionConfig, options: ProviderOptions
) -> Provider:
    """A new, unconnected provider; :class:`BadRequest` for an unknown or unusable one."""
    spec = spec_of(name)
    if not isinstance(options, spec.options):
        raise TypeError(f"{name} takes {spec.options.__name__}, not {type(options).__name__}")
    reason = spec.unavailable_reason(options)
    if reason:
        raise BadRequest(f"provider {name!r} is unavailable: {reason}", code="provider_unavailable")
    return spec.create(model or spec.default_model, config, options)
