"""What a client may configure about its voice session, validated once at the edge.

The same shape arrives in ``POST /offer`` (``"session": {...}``) and in ``session.update``
messages on the ``events`` data channel; updates are merged into the current configuration.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from .errors import BadRequest

MODALITIES = ("audio", "text")
TURN_DETECTION_TYPES = ("server_vad", "semantic_vad", "none")
MAX_INSTRUCTIONS = 32_000


def _invalid(message: str) -> BadRequest:
    return BadRequest(message, code="invalid_session")


@dataclass(frozen=True, slots=True)
class TurnDetection:
    """How the provider decides the user finished speaking; ``params`` are provider knobs."""

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
        params = {k: v for k, v in value.items() if k != "type"}
        for key, val in params.items():
            if not isinstance(val, (int, float, str, bool)) or val is None:
                raise _invalid(f"session.turn_detection.{key} must be a number, string or bool")
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
