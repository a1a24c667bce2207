"""The Gemini emulator's data: options, and what it records of each connection."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# The Live models of the Developer API (protocols-2026.md §C.1, protocols.md §2.8).
LIVE_MODELS = (
    "gemini-3.8-live",
    "gemini-3.8-live-extended-thinking",
    "gemini-3.1-flash-live-preview",
    "gemini-2.5-flash-native-audio-preview-12-2025",
    "gemini-2.5-flash-native-audio-preview-09-2025",
    "gemini-2.5-flash-native-audio-latest",
    "gemini-live-2.5-flash-preview",
    "gemini-2.0-flash-live-001",
)


@dataclass
class GeminiEmulatorOptions:
    """Replies and faults (each fault fires once)."""

    reply: str = "tone"  # tone | echo | text
    tone_hz: float = 660.0
    tone_seconds: float = 1.0
    reply_text: str = "Hello from the Gemini emulator."
    speed: float = 4.0  # reply audio per wall-clock second; 0.8 is slower than real time
    chunk_ms: int = 40
    api_keys: tuple[str, ...] = ()  # accepted keys; empty accepts any non-empty key
    models: tuple[str, ...] = LIVE_MODELS  # accepted (without "models/"); empty accepts any
    voice_activity: bool | None = None  # emit voiceActivity; None: as the model does
    resumption_interval_s: float = 0.25
    # Client messages are handled this long after they arrive, as if still on their way: a
    # handle then lacks what the client sent during that time (it must send it again).
    uplink_delay_s: float = 0.0
    handle_after_turn_s: float = 0.0  # the handle covering a finished turn comes this late
    go_away_after_s: float | None = None
    go_away_time_left_s: float = 1.0
    close_1011_after_s: float | None = None
    quota_close_after_s: float | None = None
    reject_resume: bool = False


@dataclass
class GeminiSessionRecord:
    """One connection as the emulator saw it."""

    setup: dict[str, Any] = field(default_factory=dict)
    received: list[dict[str, Any]] = field(default_factory=list)  # all but audio
    wire: list[tuple[str, Any]] = field(default_factory=list)  # ("in" | "out", message)
    audio: list[tuple[int, bytes, int]] = field(default_factory=list)  # (index, pcm, rate)
    resumed_from: tuple[GeminiSessionRecord, int] | None = None  # (parent, last index it had)
    replies: list[tuple[int, str]] = field(default_factory=list)  # (message index, answered)
    instructions: list[Any] = field(default_factory=list)  # from contextUpdate
    close_code: int | None = None
    close_reason: str = ""
    turns: int = 0

    def heard(self, upto: int | None = None) -> bytes:
        """The user audio this session's state includes, across resumptions, in order."""
        base = b""
        if self.resumed_from is not None:
            parent, consumed = self.resumed_from
            base = parent.heard(consumed)
        return base + b"".join(pcm for i, pcm, _ in self.audio if upto is None or i <= upto)
