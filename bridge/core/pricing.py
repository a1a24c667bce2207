"""Dollar cost of provider usage, from a versioned price table.

The figures are ``shared/protocols-2026.md`` Part D (USD, checked 2026-11-23 against stored
copies of the providers' model and pricing pages; see that file for sources and caveats).
Token prices are per 1M tokens; GPT-Live and the transcription models bill per minute. An
unknown model prices as ``None`` ("we don't know"), never 0.

Gemini Live re-bills the whole accumulated context on every turn: the bill of a session is the
sum of every per-turn ``usageMetadata``, each priced here on its own (pricing only the last
snapshot undercounts several times over).
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

PRICES_VERSION = "2026-11-23"


@dataclass(frozen=True, slots=True)
class TokenPrices:
    """OpenAI Realtime, USD per 1M tokens. Cached input is billed at the cached rate only."""

    text_in: float
    text_cached: float
    text_out: float
    audio_in: float
    audio_cached: float
    audio_out: float
    image_in: float = 0.0
    image_cached: float = 0.0


_REALTIME_2 = TokenPrices(4.00, 0.40, 24.00, 32.00, 0.40, 64.00, 5.00, 0.50)
_REALTIME_1 = TokenPrices(4.00, 0.40, 16.00, 32.00, 0.40, 64.00, 5.00, 0.50)
_REALTIME_MINI = TokenPrices(0.60, 0.06, 2.40, 10.00, 0.30, 20.00, 0.80, 0.08)

OPENAI_PRICES: dict[str, TokenPrices] = {
    "gpt-realtime-2.1": _REALTIME_2,
    "gpt-realtime-2": _REALTIME_2,
    "gpt-realtime-2.1-mini": _REALTIME_MINI,
    "gpt-realtime-1.5": _REALTIME_1,
    "gpt-realtime": _REALTIME_1,  # shutdown 2027-01-20
    "gpt-realtime-mini": _REALTIME_MINI,  # shutdown 2027-01-20
}

# USD per minute (GPT-Live bills active session time per second; standby is WebRTC only).
PER_MINUTE: dict[str, dict[str, float]] = {
    "gpt-live-1": {"active": 0.05, "standby": 0.02},
    "gpt-live-1.1": {"active": 0.05, "standby": 0.02},
    "gpt-realtime-whisper": {"audio": 0.017},
    "gpt-live-transcribe": {"audio": 0.017},
    "gpt-transcribe": {"audio": 0.0045},
}

_DATE_SUFFIX = re.compile(r"-\d{4}-\d{2}-\d{2}$")


def openai_prices(model: str) -> TokenPrices | None:
    """Prices for ``model``; dated snapshots fall back to their family's row."""
    if model in OPENAI_PRICES:
        return OPENAI_PRICES[model]
    return OPENAI_PRICES.get(_DATE_SUFFIX.sub("", model))


MAX_TOKENS = 10**9  # more in one report is not a real count: capped, never a crash


def _int(d: Any, key: str) -> int:
    """A token count as reported: a number in [0, MAX_TOKENS]; anything else (NaN, inf,
    negative, a string) counts 0 or is capped."""
    value = d.get(key) if isinstance(d, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0
    if isinstance(value, float) and not math.isfinite(value):
        return 0
    return max(0, min(int(value), MAX_TOKENS))


def _dict(d: Any, key: str) -> dict[str, Any]:
    value = d.get(key) if isinstance(d, dict) else None
    return value if isinstance(value, dict) else {}


def openai_cost(model: str, usage: dict[str, Any]) -> float | None:
    """USD for one ``response.done`` usage object, or None when the model is unknown.

    ``cached_tokens_details`` are part of the input counts: they are billed at the cached rate
    instead of the full one, never twice.
    """
    prices = openai_prices(model)
    if prices is None:
        return None
    inp = _dict(usage, "input_token_details")
    out = _dict(usage, "output_token_details")
    cached = _dict(inp, "cached_tokens_details")
    cached_text, cached_audio = _int(cached, "text_tokens"), _int(cached, "audio_tokens")
    cached_image = _int(cached, "image_tokens")
    total = (
        max(_int(inp, "text_tokens") - cached_text, 0) * prices.text_in
        + cached_text * prices.text_cached
        + max(_int(inp, "audio_tokens") - cached_audio, 0) * prices.audio_in
        + cached_audio * prices.audio_cached
        + max(_int(inp, "image_tokens") - cached_image, 0) * prices.image_in
        + cached_image * prices.image_cached
        + _int(out, "text_tokens") * prices.text_out
        + _int(out, "audio_tokens") * prices.audio_out
    )
    return round(total / 1_000_000, 8)


@dataclass(frozen=True, slots=True)
class ModalityPrices:
    """Gemini bills by modality: text, and audio/image/video, in and out (USD per 1M)."""

    text_in: float
    media_in: float
    text_out: float
    audio_out: float


_GEMINI_3 = ModalityPrices(0.75, 3.00, 4.50, 12.00)
GEMINI_PRICES: dict[str, ModalityPrices] = {
    "gemini-3.8-live": _GEMINI_3,
    "gemini-3.8-live-extended-thinking": _GEMINI_3,
    "gemini-3.1-flash-live": _GEMINI_3,
    "gemini-2.5-flash-native-audio": ModalityPrices(0.50, 3.00, 2.00, 12.00),
}
_GEMINI_SUFFIX = re.compile(r"-(preview|exp|latest)(-\d{2}-\d{4})?$")


def gemini_prices(model: str) -> ModalityPrices | None:
    """Prices for ``model`` (``models/`` prefix and preview/date suffixes ignored)."""
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
    """USD for one ``usageMetadata`` snapshot, or None when the model is unknown.

    Prompt tokens are billed by modality (TEXT at the text rate; AUDIO, IMAGE, VIDEO at the
    media rate); response tokens likewise; thinking tokens as text output. Tokens the details
    do not attribute are billed at the text rate. Google lists no cached-input discount for
    Live, so cached tokens stay inside the prompt count at its rates.
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


def gpt_live_cost(model: str, usage: dict[str, Any]) -> float | None:
    """USD for one GPT-Live usage report: its ``billed_seconds`` (the seconds not reported
    before; GPT-Live's own counts are cumulative) at the active per-minute rate."""
    rates = PER_MINUTE.get(_DATE_SUFFIX.sub("", model))
    seconds = usage.get("billed_seconds") if isinstance(usage, dict) else None
    if rates is None or "active" not in rates:
        return None
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        return None
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return round(min(float(seconds), 1e7) * rates["active"] / 60, 10)


def price(provider: str, model: str, usage: dict[str, Any]) -> float | None:
    """USD for one usage report of ``provider``/``model``; None when it can't be priced
    (whatever the report holds: pricing never ends a call)."""
    try:
        if provider == "openai":
            cost = openai_cost(model, usage)
        elif provider == "gemini":
            cost = gemini_cost(model, usage)
        elif provider == "gpt-live":
            cost = gpt_live_cost(model, usage)
        else:
            return 0.0 if provider == "echo" else None
    except (ArithmeticError, ValueError, TypeError):
        return None
    return cost if cost is None or math.isfinite(cost) else None


@dataclass(slots=True)
class CostTotal:
    """USD so far; ``usd`` is None as soon as one report could not be priced (unknown)."""

    usd: float | None = 0.0
    reports: int = 0

    def add(self, cost: float | None) -> None:
        self.reports += 1
        self.usd = None if cost is None or self.usd is None else round(self.usd + cost, 8)


class CostCollector:
    """Totals per provider, per model (``provider/model``) and per session, in USD.

    Fed by every usage report (the ``onCompletion`` hook's data). A report is priced once,
    with ``pricer`` (the table above unless another is given): cached tokens are part of the
    input counts and priced at the cached rate, never twice.
    """

    MAX_SESSIONS = 10_000  # the most recent sessions keep their own total

    def __init__(self, pricer: Callable[[str, str, dict[str, Any]], float | None] = price):
        self._price = pricer
        self.total = CostTotal()
        self.providers: dict[str, CostTotal] = {}
        self.models: dict[str, CostTotal] = {}
        self.sessions: OrderedDict[str, CostTotal] = OrderedDict()

    def record(
        self, session_id: str, provider: str, model: str, usage: dict[str, Any]
    ) -> float | None:
        """Price one report, add it to every total; returns its price."""
        cost = self._price(provider, model, usage)
        self.total.add(cost)
        for table, key in (
            (self.providers, provider),
            (self.models, f"{provider}/{model}"),
            (self.sessions, session_id),
        ):
            table.setdefault(key, CostTotal()).add(cost)
        self.sessions.move_to_end(session_id)
        while len(self.sessions) > self.MAX_SESSIONS:
            self.sessions.popitem(last=False)
        return cost

    def session(self, session_id: str) -> CostTotal:
        return self.sessions.get(session_id, CostTotal())

    def summary(self) -> dict[str, Any]:
        return {
            "total_usd": self.total.usd,
            "by_provider": {k: v.usd for k, v in self.providers.items()},
            "by_model": {k: v.usd for k, v in self.models.items()},
        }
