"""What the GPT-Live emulator can be told (:class:`GptLiveEmulatorOptions`: its replies, its
timing, the faults it injects) and what it records of each connection for tests
(:class:`GptLiveSessionRecord`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from bridge.emulators.gpt_live_rules import MODELS


@dataclass(frozen=True)
class GptLiveEmulatorOptions:
    """How the emulator answers and which faults it injects (each fault fires once per
    emulator: on the first connection that reaches it)."""

    reply: Literal["tone", "echo"] = "tone"  # echo replays the user's utterance
    reply_text: str | None = None  # the output transcript; None describes the reply
    tone_hz: float = 660.0
    tone_seconds: float = 1.0
    speed: float = 4.0  # output ms earned per ms of appended input; <= 0: no limit
    delta_ms: int = 100  # audio per session.output_audio.delta
    trailing_silence_ms: int = 0  # zero samples streamed after each reply (or a yield)
    min_speech_ms: int = 300  # shorter utterances get no transcript and no reply
    silence_ms: int = 500  # silence that ends an utterance
    backchannel_ms: int = 300  # speech over a reply this long is a barge-in, shorter is not
    yield_ms: int = 200  # output stops after this much speech over it (if it is a barge-in)
    vad_threshold_dbfs: float = -45.0
    delegate_on_speech: bool = False  # session.delegation.created before each reply
    lifetime_s: float = 3600.0  # then session.closed{reason:"expired"} and a 1000 close
    usage_interval_s: float | None = 15.0  # session.usage.updated cadence; None: never
    models: tuple[str, ...] = MODELS
    api_keys: tuple[str, ...] = ()  # accepted keys; empty accepts any non-empty key
    allow_model_query: bool = False  # accept ?model= on the URL instead of refusing it (400)
    invalid_key: bool = False  # fault: refuse the upgrade with HTTP 401
    drop_after_s: float | None = None  # fault: close 1011 this long after the connection opens
    stall_after_s: float | None = None  # fault: then send nothing, read nothing, stay open

    def __post_init__(self) -> None:
        if self.reply not in ("tone", "echo"):
            raise ValueError(f"reply must be 'tone' or 'echo', not {self.reply!r}")
        if self.delta_ms <= 0:
            raise ValueError("delta_ms must be positive")


@dataclass
class GptLiveSessionRecord:
    """One connection, as the emulator saw it."""

    path: str = ""
    headers: dict[str, str] = field(default_factory=dict)  # without Authorization
    session: dict[str, Any] | None = None  # the resolved session, once started
    received: list[dict[str, Any]] = field(default_factory=list)  # client events but appends
    wire: list[tuple[str, Any]] = field(default_factory=list)  # ("in" | "out", message)
    errors: list[dict[str, Any]] = field(default_factory=list)  # the ``error`` objects sent
    audio: bytearray = field(default_factory=bytearray)  # appended input, as sent
    appends: int = 0
    input_ms: float = 0.0  # appended input duration (the session clock)
    output_ms_generated: float = 0.0  # output audio sent, trailing silence included
    replies: int = 0  # replies started
    yields: list[tuple[float, float]] = field(default_factory=list)  # (input ms, output ms)
    delegations: list[str] = field(default_factory=list)
    appended: list[tuple[str, str, str | None]] = field(default_factory=list)  # kind, text, id
    input_transcript: str = ""
    output_transcript: str = ""
    muted: bool = False
    usage_seconds: float | None = None  # the last usage sent
    closed_reason: str | None = None  # of session.closed
    close_code: int | None = None
    stalled: bool = False

    @property
    def audio_bytes(self) -> int:
        return len(self.audio)

    @property
    def yielded(self) -> bool:
        return bool(self.yields)

    @property
    def yielded_at_input_ms(self) -> float | None:
        """Input-clock ms at which output stopped for the first barge-in."""
        return self.yields[0][0] if self.yields else None

    @property
    def yielded_output_ms(self) -> float | None:
        """Speech ms the interrupted reply had generated when it stopped."""
        return self.yields[0][1] if self.yields else None

    @property
    def sent(self) -> list[dict[str, Any]]:
        return [m for d, m in self.wire if d == "out"]

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        """Server events of one type."""
        return [m for m in self.sent if m.get("type") == kind]
