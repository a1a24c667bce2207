"""What any transport may ask of a conversation, besides streaming audio.

A transport turns its own wire (the WebRTC ``events`` channel, an SDK ``send()``, later a
the gateway's OpenAI client events) into these and hands them to
:meth:`~bridge.core.conversation.Conversation.submit`; the conversation applies them in order,
once its provider session is open (what comes earlier waits, it is not lost). User audio does
not go through here: it is the hot path (:meth:`Conversation.send_audio`), except while
commands wait, when it queues behind them as :class:`Audio` so that a commit never takes in
audio sent after it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class SendText:
    """A typed user message; with ``turn_complete`` the model is asked to answer now, without
    it the text only joins the user's turn."""

    text: str
    turn_complete: bool = True


@dataclass(frozen=True, slots=True)
class Audio:
    """User audio that came while commands were waiting (queued by the conversation itself)."""

    pcm: bytes


@dataclass(frozen=True, slots=True)
class CommitAudio:
    """The user's audio turn is complete (manual turns): answer it."""


@dataclass(frozen=True, slots=True)
class UpdateSession:
    """Fields of the session configuration to change (validated and merged on arrival)."""

    session: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Interrupt:
    """Stop the current reply now (the client's own barge-in): playback is flushed and the
    provider told what was heard."""


@dataclass(frozen=True, slots=True)
class Relay:
    """A client event in the provider's own protocol, already checked against the server's
    policy, to pass through as it is (the gateway in front of OpenAI). Providers that don't
    speak the client's protocol refuse it."""

    message: dict[str, Any]


Command = SendText | CommitAudio | UpdateSession | Interrupt | Relay
