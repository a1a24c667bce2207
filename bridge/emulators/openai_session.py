"""The OpenAI emulator's data: options and what it records (the protocol's rules live in
:mod:`bridge.protocols.openai_server`, shared with the gateway)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bridge.audio.format import AudioFormat
from bridge.protocols.openai_server import session_format


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
        return session_format(self.session, "input")

    @property
    def output_format(self) -> AudioFormat:
        return session_format(self.session, "output")

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.received if m.get("type") == kind]
