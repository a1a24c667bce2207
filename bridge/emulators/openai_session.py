"""The OpenAI emulator's data: options, what it records, and the session object's rules."""

from __future__ import annotations

import copy
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from bridge.audio.format import AudioFormat

SESSION_KEYS = {
    "type",
    "model",
    "output_modalities",
    "instructions",
    "tools",
    "tool_choice",
    "max_output_tokens",
    "tracing",
    "truncation",
    "prompt",
    "include",
    "audio",
    "reasoning",
}
AUDIO_INPUT_KEYS = {"format", "transcription", "noise_reduction", "turn_detection"}
AUDIO_OUTPUT_KEYS = {"format", "voice", "speed"}
TURN_DETECTION_KEYS = {
    "server_vad": {
        "type",
        "threshold",
        "prefix_padding_ms",
        "silence_duration_ms",
        "idle_timeout_ms",
        "create_response",
        "interrupt_response",
    },
    "semantic_vad": {"type", "eagerness", "create_response", "interrupt_response"},
}
TRANSCRIPTION_KEYS = {"model", "language", "prompt", "keywords", "languages", "delay"}
TRANSCRIPTION_MODELS = {
    "whisper-1",
    "gpt-transcribe",
    "gpt-live-transcribe",
    "gpt-4o-mini-transcribe",
    "gpt-4o-mini-transcribe-2025-12-15",
    "gpt-4o-transcribe",
    "gpt-4o-transcribe-diarize",
    "gpt-realtime-whisper",
}
VOICE_LOCKED = "Cannot update a conversation's voice if assistant audio is present."
FORMATS = {
    "audio/pcm": AudioFormat("pcm16", 24000),
    "audio/pcmu": AudioFormat("pcmu", 8000),
    "audio/pcma": AudioFormat("pcma", 8000),
}
DEFAULT_INSTRUCTIONS = (
    "Your knowledge cutoff is 2023-10. You are a helpful, witty, and friendly AI."
)


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


def default_session(model: str) -> dict[str, Any]:
    return {
        "type": "realtime",
        "object": "realtime.session",
        "id": new_id("sess"),
        "model": model,
        "output_modalities": ["audio"],
        "instructions": DEFAULT_INSTRUCTIONS,
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
        "tracing": None,
        "truncation": "auto",
        "prompt": None,
        "expires_at": int(time.time()) + 3600,
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "transcription": None,
                "noise_reduction": None,
                "turn_detection": {
                    "type": "server_vad",
                    "threshold": 0.5,
                    "prefix_padding_ms": 300,
                    "silence_duration_ms": 200,
                    "idle_timeout_ms": None,
                    "create_response": True,
                    "interrupt_response": True,
                },
            },
            "output": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "voice": "alloy",
                "speed": 1.0,
            },
        },
        "include": None,
    }


@dataclass
class OpenAIEmulatorOptions:
    """What the emulator replies and which faults it injects (each fault fires once)."""

    reply: str = "echo"  # echo | tone | text | loopback (every append comes straight back)
    tone_hz: float = 660.0
    tone_seconds: float = 1.0
    reply_text: str = "Hello! This is the OpenAI emulator speaking."
    speed: float = 4.0  # audio deltas per real-time second; 0 sends them as fast as possible
    delta_ms: int = 100
    api_keys: tuple[str, ...] = ()  # accepted keys; empty accepts any non-empty key
    accept_beta: bool = False
    invalid_key: bool = False  # refuse the key at the upgrade (HTTP 401)
    invalid_key_in_band: bool = False  # refuse it with an error event, then close
    close_1011_after_s: float | None = None
    session_expired_after_s: float | None = None
    stall_after_s: float | None = None
    barge_in_after_s: float | None = None  # fake user speech after a reply's first delta


@dataclass
class EmulatedSession:
    """One connection, as the emulator saw it."""

    model: str
    headers: dict[str, str]
    session: dict[str, Any]
    received: list[dict[str, Any]] = field(default_factory=list)
    wire: list[tuple[str, Any]] = field(default_factory=list)  # ("in" | "out", message)
    audio: bytearray = field(default_factory=bytearray)  # appended input, as sent
    errors: list[dict[str, Any]] = field(default_factory=list)
    close_code: int | None = None
    generated_ms: dict[str, int] = field(default_factory=dict)

    @property
    def input_format(self) -> AudioFormat:
        return FORMATS[self.session["audio"]["input"]["format"]["type"]]

    @property
    def output_format(self) -> AudioFormat:
        return FORMATS[self.session["audio"]["output"]["format"]["type"]]

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.received if m.get("type") == kind]


class EmulatorError(Exception):
    """A client mistake, answered with an ``error`` event shaped like OpenAI's."""

    def __init__(self, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.param = code, message, param


def _unknown(param: str) -> EmulatorError:
    return EmulatorError("unknown_parameter", f"Unknown parameter: '{param}'.", param)


def _check_turn_detection(value: object) -> None:
    if value is None:
        return
    param = "session.audio.input.turn_detection"
    kind = value.get("type") if isinstance(value, dict) else None
    if not isinstance(value, dict) or kind not in TURN_DETECTION_KEYS:
        raise EmulatorError(
            "invalid_value",
            f"Invalid value: {kind!r}. Supported values are: 'server_vad' and 'semantic_vad'.",
            f"{param}.type",
        )
    for key in value:
        if key not in TURN_DETECTION_KEYS[kind]:
            raise _unknown(f"{param}.{key}")


def _check_transcription(value: object) -> None:
    if value is None:
        return
    param = "session.audio.input.transcription"
    if not isinstance(value, dict):
        raise EmulatorError("invalid_type", "Invalid type for transcription.", param)
    for key in value:
        if key not in TRANSCRIPTION_KEYS:
            raise _unknown(f"{param}.{key}")
    if value.get("model") not in TRANSCRIPTION_MODELS:
        raise EmulatorError(
            "invalid_value", f"Invalid value: {value.get('model')!r}.", f"{param}.model"
        )


def merged_session(
    current: dict[str, Any], update_obj: object, *, audio_produced: bool = False
) -> dict[str, Any]:
    """Validate a ``session.update`` like the GA server does and merge it into ``current``.

    Like the real API, a voice change once the session has produced audio refuses the whole
    update (``cannot_update_voice``).
    """
    update = update_obj
    if not isinstance(update, dict):
        raise EmulatorError(
            "missing_required_parameter", "Missing required parameter: 'session'.", "session"
        )
    if update.get("type") not in ("realtime",):
        raise EmulatorError(
            "missing_required_parameter",
            "Missing required parameter: 'session.type'.",
            "session.type",
        )
    for key in update:
        if key not in SESSION_KEYS:
            raise _unknown(f"session.{key}")
    audio = update.get("audio") or {}
    for side, allowed in (("input", AUDIO_INPUT_KEYS), ("output", AUDIO_OUTPUT_KEYS)):
        for key, value in (audio.get(side) or {}).items():
            if key not in allowed:
                raise _unknown(f"session.audio.{side}.{key}")
            if key == "turn_detection":
                _check_turn_detection(value)
            elif key == "transcription":
                _check_transcription(value)
            elif key == "voice" and value != current["audio"]["output"]["voice"]:
                if audio_produced:
                    raise EmulatorError("cannot_update_voice", VOICE_LOCKED, "session.audio.output")
            elif key == "format":
                fmt_type = (value or {}).get("type")
                if fmt_type not in FORMATS or (
                    fmt_type == "audio/pcm" and value.get("rate", 24000) != 24000
                ):
                    raise EmulatorError(
                        "invalid_value",
                        f"Invalid audio format: {value!r}.",
                        f"session.audio.{side}.format",
                    )
    modalities = update.get("output_modalities")
    if modalities is not None and modalities not in (["audio"], ["text"]):
        raise EmulatorError(
            "invalid_value",
            "output_modalities must be ['audio'] or ['text'].",
            "session.output_modalities",
        )
    session = copy.deepcopy(current)
    for key, value in update.items():
        if key != "audio":
            session[key] = value
    for side in ("input", "output"):
        session["audio"][side].update(audio.get(side) or {})
    return session
