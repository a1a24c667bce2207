"""The provider-neutral event model.

Every provider translates its wire protocol into these frozen dataclasses; a
:class:`~bridge.core.conversation.Conversation` applies its policies to them and hands them to
its transport: the WebRTC ``events`` data channel (one JSON object per message,
:func:`to_wire`), or the SDK's callbacks and iterator, where each event's ``type`` names it.
Reply audio (:class:`AudioOut`) goes to the transport's playback sink (the WebRTC outbound
track) or, in the SDK, out as ``audio`` events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

Role = Literal["user", "assistant"]


@dataclass(frozen=True, slots=True)
class Open:
    """The provider session is ready to take audio."""

    type: ClassVar[str] = "open"


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of the assistant's text reply."""

    type: ClassVar[str] = "text"

    delta: str


@dataclass(frozen=True, slots=True)
class Transcript:
    """A transcript of what the user or the assistant said; ``final`` closes the turn."""

    type: ClassVar[str] = "transcript"

    role: Role
    text: str
    final: bool


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    """The provider heard the user start speaking; the bridge flushes playback (barge-in)."""

    type: ClassVar[str] = "speechStarted"


@dataclass(frozen=True, slots=True)
class SpeechStopped:
    """The provider heard the user stop speaking."""

    type: ClassVar[str] = "speechStopped"


@dataclass(frozen=True, slots=True)
class AudioOut:
    """Reply audio of reply ``item_id``: PCM16 LE mono at ``rate``, or G.711 bytes."""

    type: ClassVar[str] = "audio"

    pcm: bytes = field(repr=False)
    rate: int
    item_id: str
    encoding: str = "pcm16"

    @property
    def chunk(self) -> bytes:
        return self.pcm

    @property
    def sample_rate(self) -> int:
        return self.rate

    @property
    def mime_type(self) -> str:
        if self.encoding == "pcm16":
            return f"audio/pcm;rate={self.rate}"
        return f"audio/{self.encoding}"


@dataclass(frozen=True, slots=True)
class AudioDone:
    """All audio of reply ``item_id`` has been sent: playback need not wait for more."""

    type: ClassVar[str] = "audioDone"

    item_id: str


@dataclass(frozen=True, slots=True)
class Interrupted:
    """The provider cancelled its reply (e.g. Gemini ``interrupted``); flush playback."""

    type: ClassVar[str] = "interrupted"


@dataclass(frozen=True, slots=True)
class TurnComplete:
    """The assistant finished generating its reply."""

    type: ClassVar[str] = "turnComplete"


@dataclass(frozen=True, slots=True)
class Usage:
    """Resource use of one turn, as the provider reported it. ``cost_usd`` is added by the
    conversation from the price table: None when the price is unknown, never 0."""

    type: ClassVar[str] = "usage"

    usage: dict[str, Any]
    cost_usd: float | None = None


@dataclass(frozen=True, slots=True)
class Error:
    """Something went wrong; ``fatal`` errors end the session after being reported. ``param``
    names the field at fault and ``event_id`` the client event it answers, when known."""

    type: ClassVar[str] = "error"

    code: str
    message: str
    fatal: bool = False
    param: str | None = None
    event_id: str | None = None


@dataclass(frozen=True, slots=True)
class Close:
    """The session ended; ``reason`` says why (e.g. ``peer_closed``, ``inactive``)."""

    type: ClassVar[str] = "close"

    reason: str = ""


Event = (
    Open
    | TextDelta
    | Transcript
    | SpeechStarted
    | SpeechStopped
    | AudioOut
    | AudioDone
    | Interrupted
    | TurnComplete
    | Usage
    | Error
    | Close
)


EVENT_TYPES = tuple(
    cls.type
    for cls in (
        Open,
        TextDelta,
        Transcript,
        SpeechStarted,
        SpeechStopped,
        AudioOut,
        Interrupted,
        TurnComplete,
        Usage,
        Error,
        Close,
    )
)


def to_wire(event: Event) -> dict[str, Any] | None:
    """The JSON object sent on the ``events`` channel, or None for events that stay inside."""
    match event:
        case Open():
            return {"type": "open"}
        case TextDelta(delta=delta):
            return {"type": "text", "delta": delta}
        case Transcript(role=role, text=text, final=final):
            return {"type": "transcript", "role": role, "text": text, "final": final}
        case SpeechStarted():
            return {"type": "speechStarted"}
        case SpeechStopped():
            return {"type": "speechStopped"}
        case Interrupted():
            return {"type": "interrupted"}
        case TurnComplete():
            return {"type": "turnComplete"}
        case Usage(usage=usage, cost_usd=cost):
            return {"type": "usage", "usage": usage, "cost_usd": cost}
        case Error(code=code, message=message):
            return {"type": "error", "error": {"code": code, "message": message}}
        case Close(reason=reason):
            return {"type": "close", "reason": reason}
        case AudioOut() | AudioDone():
            return None
