"""What each provider model can do, and until when: one table per provider, no ``if`` chains.

Sources: ``shared/protocols-2026.md`` Part B.1 (OpenAI models and shutdown dates) and Part C.1
/ C.2 (Gemini Live models and their per-generation rules), checked 2026-11-23. Where that
reference and the official SDKs disagree, the SDKs' types won (see the README's provider notes).
"""

from __future__ import annotations

import datetime
import logging
import re
from dataclasses import dataclass
from typing import Literal

from bridge.core.errors import BadRequest

log = logging.getLogger(__name__)

CATALOG_CHECKED = "2026-11-23"
# A model this close to its shutdown date is flagged in the log and in GET /providers.
WARN_BEFORE_SHUTDOWN = datetime.timedelta(days=90)


@dataclass(frozen=True, slots=True)
class Lifecycle:
    """A model's end of life. ``shutdown`` None with ``retired`` set means already gone."""

    shutdown: datetime.date | None = None
    replacement: str | None = None
    retired: bool = False
    deprecated: bool = False  # deprecated without a known date
    note: str = ""

    def status(self, today: datetime.date) -> Literal["current", "deprecated", "retired"]:
        if self.retired or (self.shutdown is not None and today >= self.shutdown):
            return "retired"
        if self.shutdown is not None or self.deprecated:
            return "deprecated"
        return "current"

    def warning(self, model: str, today: datetime.date) -> str | None:
        """A sentence for the log and GET /providers, or None when nothing is near."""
        status = self.status(today)
        instead = f"; use {self.replacement}" if self.replacement else ""
        if status == "retired":
            when = f" on {self.shutdown}" if self.shutdown else ""
            return f"{model} was shut down{when}{instead}"
        if self.shutdown is not None and self.shutdown - today <= WARN_BEFORE_SHUTDOWN:
            return f"{model} shuts down on {self.shutdown}{instead}"
        if self.deprecated:
            return f"{model} is deprecated{instead}"
        return None


def check_lifecycle(
    provider: str, model: str, lifecycle: Lifecycle, today: datetime.date | None = None
) -> None:
    """Refuse a model past its shutdown date (``model_retired``); log one near it."""
    today = today or datetime.date.today()
    warning = lifecycle.warning(model, today)
    if lifecycle.status(today) == "retired":
        raise BadRequest(f"{provider} model {warning}", code="model_retired")
    if warning:
        log.warning("%s: %s", provider, warning)


CURRENT = Lifecycle()
_REALTIME_END = datetime.date(2027, 1, 20)
_TRANSCRIBE_END = datetime.date(2027, 2, 26)

OPENAI_REALTIME_MODELS: dict[str, Lifecycle] = {
    "gpt-realtime-2.1": CURRENT,
    "gpt-realtime-2.1-mini": CURRENT,
    "gpt-realtime-2": CURRENT,
    "gpt-realtime-1.5": CURRENT,
    "gpt-realtime": Lifecycle(_REALTIME_END, "gpt-realtime-2.1"),
    "gpt-realtime-2025-08-28": Lifecycle(_REALTIME_END, "gpt-realtime-2.1"),
    "gpt-realtime-mini": Lifecycle(_REALTIME_END, "gpt-realtime-2.1-mini"),
    "gpt-realtime-mini-2025-12-15": Lifecycle(_REALTIME_END, "gpt-realtime-2.1-mini"),
    "gpt-realtime-mini-2025-10-06": Lifecycle(
        _REALTIME_END, "gpt-realtime-2.1-mini", note="its alias is deprecated (unverified date)"
    ),
    "gpt-audio-mini": Lifecycle(_REALTIME_END, "gpt-realtime-2.1-mini"),
    "gpt-audio-mini-2025-12-15": Lifecycle(_REALTIME_END, "gpt-realtime-2.1-mini"),
}
# The retired beta family (gpt-4o-realtime-preview*, gpt-4o-mini-realtime-preview*).
_RETIRED_PREVIEW = re.compile(r"^gpt-4o(-mini)?-realtime-preview")
_RETIRED = Lifecycle(
    replacement="gpt-realtime-2.1",
    retired=True,
    note="the beta Realtime interface these models need is disabled",
)

OPENAI_TRANSCRIPTION_MODELS: dict[str, Lifecycle] = {
    "gpt-live-transcribe": CURRENT,
    "gpt-transcribe": CURRENT,
    "gpt-realtime-whisper": CURRENT,
    "whisper-1": Lifecycle(_TRANSCRIBE_END, "gpt-live-transcribe"),
    "gpt-4o-transcribe": Lifecycle(_TRANSCRIBE_END, "gpt-live-transcribe"),
    "gpt-4o-mini-transcribe": Lifecycle(_TRANSCRIBE_END, "gpt-live-transcribe"),
    "gpt-4o-mini-transcribe-2025-12-15": Lifecycle(_TRANSCRIBE_END, "gpt-live-transcribe"),
    "gpt-4o-transcribe-diarize": Lifecycle(_TRANSCRIBE_END, "gpt-live-transcribe"),
}


def describe(model: str, lifecycle: Lifecycle, today: datetime.date) -> dict[str, object]:
    """How GET /providers shows one model."""
    return {
        "id": model,
        "status": lifecycle.status(today),
        "shutdown": lifecycle.shutdown.isoformat() if lifecycle.shutdown else None,
        "replacement": lifecycle.replacement,
        "warning": lifecycle.warning(model, today),
    }


def openai_models(today: datetime.date | None = None) -> list[dict[str, object]]:
    today = today or datetime.date.today()
    return [describe(m, life, today) for m, life in OPENAI_REALTIME_MODELS.items()]


def gemini_models(today: datetime.date | None = None) -> list[dict[str, object]]:
    today = today or datetime.date.today()
    return [describe(m, rules.lifecycle, today) for m, rules in GEMINI_LIVE_MODELS.items()]


def openai_lifecycle(model: str) -> Lifecycle:
    """The model's lifecycle; unknown models are assumed current (the API will say if not)."""
    if _RETIRED_PREVIEW.match(model):
        return _RETIRED
    return OPENAI_REALTIME_MODELS.get(model, CURRENT)


@dataclass(frozen=True, slots=True)
class GeminiModel:
    """How one Gemini Live model behaves (protocols-2026.md §C.2)."""

    response_modalities: tuple[str, ...]  # what setup may ask for; AUDIO-only models refuse TEXT
    context_update: bool = False  # instructions change mid-session with ``contextUpdate``
    voice_activity: bool = False  # sends ``voiceActivity`` start/end of user speech
    interaction_status: bool = False  # a request can span several turns until IDLE
    lifecycle: Lifecycle = CURRENT

    @property
    def audio_only(self) -> bool:
        return "TEXT" not in self.response_modalities


_GEMINI_3_8 = GeminiModel(("AUDIO",), context_update=True, voice_activity=True)
_GEMINI_3_8_THINKING = GeminiModel(("AUDIO",), voice_activity=True, interaction_status=True)
_GEMINI_3_1 = GeminiModel(("AUDIO",), voice_activity=True)
_GEMINI_2_5_NATIVE = GeminiModel(("AUDIO",))
# Half-cascade models take TEXT as well; Google deprecated them (no date in the reference).
_HALF_CASCADE = GeminiModel(
    ("AUDIO", "TEXT"), lifecycle=Lifecycle(deprecated=True, replacement="gemini-3.8-live")
)

GEMINI_LIVE_MODELS: dict[str, GeminiModel] = {
    "gemini-3.8-live": _GEMINI_3_8,
    "gemini-3.8-live-extended-thinking": _GEMINI_3_8_THINKING,
    "gemini-3.1-flash-live-preview": _GEMINI_3_1,
    "gemini-2.5-flash-native-audio-preview-12-2025": _GEMINI_2_5_NATIVE,
    "gemini-2.5-flash-native-audio-preview-09-2025": _GEMINI_2_5_NATIVE,
    "gemini-2.5-flash-native-audio-latest": _GEMINI_2_5_NATIVE,
    "gemini-live-2.5-flash-preview": _HALF_CASCADE,
    "gemini-2.0-flash-live-001": _HALF_CASCADE,
}


def gemini_model(model: str) -> GeminiModel:
    """Rules for ``model`` (``models/`` prefix ignored); unknown ones get the closest family,
    and AUDIO-only when in doubt, since that is what every current Live model takes."""
    name = model.removeprefix("models/")
    if name in GEMINI_LIVE_MODELS:
        return GEMINI_LIVE_MODELS[name]
    if name.startswith("gemini-3"):
        return _GEMINI_3_1
    return _GEMINI_2_5_NATIVE
