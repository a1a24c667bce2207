"""Dollar cost of provider usage, from a versioned price table.

Prices are USD per 1M tokens, copied from the providers' model pages (see
``shared/protocols.md`` §1.13). An unknown model prices as ``None`` ("we don't know"), never 0.
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
