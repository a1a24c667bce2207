"""The provider-neutral event model.

Every provider translates its wire protocol into these frozen dataclasses, and the session
forwards them to the client's ``events`` data channel as one JSON object per message
(:func:`to_wire`). :class:`AudioOut` is the exception: reply audio goes to the outbound WebRTC
track, never to the data channel.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["user", "assistant"]


@dataclass(frozen=True, slots=True)
class Open:
    """The provider session is ready to take audio."""


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of the assistant's text reply."""

    delta: str


@dataclass(frozen=True, slots=True)
class Transcript:
    """A transcript of what the user or the assistant said; ``final`` closes the turn."""

    role: Role
    text: str
    final: bool


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    """The provider heard the user start speaking; the bridge flushes playback (barge-in)."""


@dataclass(frozen=True, slots=True)
class SpeechStopped:
    """The provider heard the user stop speaking."""


@dataclass(frozen=True, slots=True)
class AudioOut:
    """Reply audio of reply ``item_id``: PCM16 LE mono at ``rate``, or G.711 bytes."""

    pcm: bytes = field(repr=False)
    rate: int
    item_id: str
    encoding: str = "pcm16"


@dataclass(frozen=True, slots=True)
class AudioDone:
    """All audio of reply ``item_id`` has been sent: playback need not wait for more."""

    item_id: str


@dataclass(frozen=True, slots=True)
class Interrupted:
    """The provider cancelled its reply (e.g. Gemini ``interrupted``); flush playback."""


@dataclass(frozen=True, slots=True)
class TurnComplete:
    """The assistant finished generating its reply."""


@dataclass(frozen=True, slots=True)
class Usage:
    """Resource use of one turn; ``cost_usd`` is None when the price is unknown, never 0."""

    usage: dict[str, Any]
    cost_usd: float | None = None


@dataclass(frozen=True, slots=True)
class Error:
    """Something went wrong; ``fatal`` errors end the session after being reported."""

    code: str
    message: str
    fatal: bool = False


@dataclass(frozen=True, slots=True)
class Close:
    """The session ended; ``reason`` says why (e.g. ``peer_closed``, ``inactive``)."""

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
