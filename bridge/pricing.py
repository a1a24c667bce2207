"""Dollar cost of provider usage, from a versioned price table.

Prices are USD per 1M tokens, copied from the providers' pricing pages (OpenAI: see
``shared/protocols.md`` §1.13; Gemini Live: Google's Gemini API pricing page and a Google
answer on its developer forum for 2.0 Flash Live). An unknown model prices as ``None``
("we don't know"), never 0.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

PRICES_VERSION = "2026-08"


@dataclass(frozen=True, slots=True)
class TokenPrices:
    text_in: float
    text_cached: float
    text_out: float
    audio_in: float
    audio_cached: float
    audio_out: float
    image_in: float = 0.0


OPENAI_PRICES: dict[str, TokenPrices] = {
    "gpt-realtime": TokenPrices(4.00, 0.40, 16.00, 32.00, 0.40, 64.00, 5.00),
    "gpt-realtime-1.5": TokenPrices(4.00, 0.40, 16.00, 32.00, 0.40, 64.00, 5.00),
    "gpt-realtime-2": TokenPrices(4.00, 0.40, 24.00, 32.00, 0.40, 64.00, 5.00),
    "gpt-realtime-2.1": TokenPrices(4.00, 0.40, 24.00, 32.00, 0.40, 64.00, 5.00),
    "gpt-realtime-mini": TokenPrices(0.60, 0.06, 2.40, 10.00, 0.30, 20.00, 0.80),
    "gpt-realtime-2.1-mini": TokenPrices(0.60, 0.06, 2.40, 10.00, 0.30, 20.00, 0.80),
    "gpt-4o-realtime-preview": TokenPrices(5.00, 2.50, 20.00, 40.00, 2.50, 80.00),
    "gpt-4o-realtime-preview-2024-10-01": TokenPrices(5.00, 2.50, 20.00, 100.00, 20.00, 200.00),
    "gpt-4o-mini-realtime-preview": TokenPrices(0.60, 0.30, 2.40, 10.00, 0.30, 20.00),
}

_DATE_SUFFIX = re.compile(r"-\d{4}-\d{2}-\d{2}$")


def openai_prices(model: str) -> TokenPrices | None:
    """Prices for ``model``; dated snapshots fall back to their family's row."""
    if model in OPENAI_PRICES:
        return OPENAI_PRICES[model]
    return OPENAI_PRICES.get(_DATE_SUFFIX.sub("", model))


def _int(d: dict[str, Any], key: str) -> int:
    value = d.get(key)
    return int(value) if isinstance(value, (int, float)) else 0


def openai_cost(model: str, usage: dict[str, Any]) -> float | None:
    """USD for one ``response.done`` usage object, or None when the model is unknown."""
    prices = openai_prices(model)
    if prices is None:
        return None
    inp = usage.get("input_token_details") or {}
    out = usage.get("output_token_details") or {}
    cached = inp.get("cached_tokens_details") or {}
    cached_text, cached_audio = _int(cached, "text_tokens"), _int(cached, "audio_tokens")
    total = (
        (_int(inp, "text_tokens") - cached_text) * prices.text_in
        + cached_text * prices.text_cached
        + (_int(inp, "audio_tokens") - cached_audio) * prices.audio_in
        + cached_audio * prices.audio_cached
        + _int(inp, "image_tokens") * prices.image_in
        + _int(out, "text_tokens") * prices.text_out
        + _int(out, "audio_tokens") * prices.audio_out
    )
    return round(total / 1_000_000, 8)


@dataclass(frozen=True, slots=True)
class ModalityPrices:
    """Gemini bills by modality: text, and audio/image/video, in and out."""

    text_in: float
    media_in: float
    text_out: float
    audio_out: float


GEMINI_PRICES: dict[str, ModalityPrices] = {
    "gemini-2.5-flash-native-audio": ModalityPrices(0.50, 3.00, 2.00, 12.00),
    "gemini-live-2.5-flash-native-audio": ModalityPrices(0.50, 3.00, 2.00, 12.00),
    "gemini-2.0-flash-live-001": ModalityPrices(0.35, 2.10, 1.50, 8.50),
}
_GEMINI_SUFFIX = re.compile(r"-(preview|exp)(-\d{2}-\d{4})?$")


def gemini_prices(model: str) -> ModalityPrices | None:
    """Prices for ``model`` (``models/`` prefix and preview date suffixes ignored)."""
    name = model.removeprefix("models/")
    if name in GEMINI_PRICES:
        return GEMINI_PRICES[name]
    return GEMINI_PRICES.get(_GEMINI_SUFFIX.sub("", name))


def _by_modality(details: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in details if isinstance(details, list) else []:
        if isinstance(item, dict):
            modality = str(item.get("modality") or "")
            out[modality] = out.get(modality, 0) + _int(item, "tokenCount")
    return out


def gemini_cost(model: str, usage: dict[str, Any]) -> float | None:
    """USD for one ``usageMetadata``, or None when the model is unknown.

    Prompt tokens are billed by modality (TEXT at the text rate; AUDIO, IMAGE, VIDEO at the
    media rate); response tokens likewise; thinking tokens as text output. Tokens the
    details do not attribute are billed at the text rate.
    """
    prices = gemini_prices(model)
    if prices is None:
        return None
    prompt = _by_modality(usage.get("promptTokensDetails"))
    response = _by_modality(usage.get("responseTokensDetails"))
    prompt_text = prompt.get("TEXT", 0) + max(
        _int(usage, "promptTokenCount") - sum(prompt.values()), 0
    )
    response_text = response.get("TEXT", 0) + max(
        _int(usage, "responseTokenCount") - sum(response.values()), 0
    )
    media_in = sum(v for k, v in prompt.items() if k != "TEXT")
    audio_out = sum(v for k, v in response.items() if k != "TEXT")
    total = (
        prompt_text * prices.text_in
        + media_in * prices.media_in
        + (response_text + _int(usage, "thoughtsTokenCount")) * prices.text_out
        + audio_out * prices.audio_out
    )
    return round(total / 1_000_000, 8)
