"""What a client may configure about its voice session, validated once at the edge.

The same shape arrives in ``POST /offer`` (``"session": {...}``) and in ``session.update``
messages on the ``events`` data channel; updates are merged into the current configuration.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from bridge.core.errors import BadRequest

MODALITIES = ("audio", "text")
TURN_DETECTION_TYPES = ("server_vad", "semantic_vad", "none")
EAGERNESS = ("low", "medium", "high", "auto")
MAX_INSTRUCTIONS = 32_000


def _invalid(message: str) -> BadRequest:
    return BadRequest(message, code="invalid_session")


def _number(lo: float, hi: float | None = None) -> Callable[[object], bool]:
    def check(value: object) -> bool:
        return (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and value >= lo
            and (hi is None or value <= hi)
        )

    return check


def _whole_ms(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 60_000


def _flag(value: object) -> bool:
    return isinstance(value, bool)


# The knobs each kind of turn detection takes (OpenAI's shapes, which the provider-neutral API
# borrows; other providers map what they can). Checked before anything reaches a provider:
# OpenAI refuses the whole session.update over one knob of the wrong kind.
TURN_DETECTION_PARAMS: dict[str, dict[str, tuple[Callable[[object], bool], str]]] = {
    "server_vad": {
        "threshold": (_number(0.0, 1.0), "a number from 0 to 1"),
        "prefix_padding_ms": (_whole_ms, "whole milliseconds from 0 to 60000"),
        "silence_duration_ms": (_whole_ms, "whole milliseconds from 0 to 60000"),
        "idle_timeout_ms": (lambda v: v is None or _whole_ms(v), "whole milliseconds or null"),
        "create_response": (_flag, "true or false"),
        "interrupt_response": (_flag, "true or false"),
    },
    "semantic_vad": {
        "eagerness": (lambda v: v in EAGERNESS, "low, medium, high or auto"),
        "create_response": (_flag, "true or false"),
        "interrupt_response": (_flag, "true or false"),
    },
    "none": {},
}


@dataclass(frozen=True, slots=True)
class TurnDetection:
    """How the provider decides the user finished speaking; ``params`` are its knobs,
    validated per ``type`` (:data:`TURN_DETECTION_PARAMS`)."""

    type: str = "server_vad"
    params: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, value: object) -> TurnDetection:
        if value is None:
            return cls(type="none")
        if not isinstance(value, dict):
            raise _invalid("session.turn_detection must be an object or null")
        kind = value.get("type", "server_vad")
        if kind not in TURN_DETECTION_TYPES:
            raise _invalid(f"session.turn_detection.type must be one of {TURN_DETECTION_TYPES}")
        allowed = TURN_DETECTION_PARAMS[kind]
        params = {k: v for k, v in value.items() if k != "type"}
        for key, val in params.items():
            if key not in allowed:
                names = ", ".join(allowed) or "none"
                raise _invalid(
                    f"session.turn_detection.{key[:64]} is not a {kind} setting (allowed: {names})"
                )
            check, expected = allowed[key]
            if not check(val):
                raise _invalid(f"session.turn_detection.{key} must be {expected}")
        return cls(type=kind, params=params)

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, **self.params}


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """Provider-neutral session settings; providers translate them to their wire format."""

    instructions: str | None = None
    voice: str | None = None
    output_modalities: tuple[str, ...] = ("audio",)
    turn_detection: TurnDetection = field(default_factory=TurnDetection)
    input_transcription: bool = True

    def merged(self, update: object) -> SessionConfig:
        """A copy with the fields present in ``update`` (a JSON object) replaced."""
        if not isinstance(update, dict):
            raise _invalid("session must be a JSON object")
        changes: dict[str, Any] = {}
        for key, value in update.items():
            if key == "instructions":
                if value is not None and not isinstance(value, str):
                    raise _invalid("session.instructions must be a string")
                if value is not None and len(value) > MAX_INSTRUCTIONS:
                    raise _invalid(f"session.instructions is over {MAX_INSTRUCTIONS} characters")
                changes["instructions"] = value
            elif key == "voice":
                if value is not None and (not isinstance(value, str) or not value.strip()):
                    raise _invalid("session.voice must be a non-empty string")
                changes["voice"] = value
            elif key == "output_modalities":
                if (
                    not isinstance(value, list)
                    or not value
                    or any(m not in MODALITIES for m in value)
                ):
                    raise _invalid(f"session.output_modalities must be a list of {MODALITIES}")
                changes["output_modalities"] = tuple(dict.fromkeys(value))
            elif key == "turn_detection":
                changes["turn_detection"] = TurnDetection.from_json(value)
            elif key == "input_transcription":
                if not isinstance(value, bool):
                    raise _invalid("session.input_transcription must be true or false")
                changes["input_transcription"] = value
            else:
                allowed = "instructions, voice, output_modalities, turn_detection"
                raise _invalid(f"unknown session field {key!r} (allowed: {allowed}, ...)")
        return replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        return {
            "instructions": self.instructions,
            "voice": self.voice,
            "output_modalities": list(self.output_modalities),
            "turn_detection": self.turn_detection.to_json(),
            "input_transcription": self.input_transcription,
        }
