"""Where a conversation's reply audio goes: the one seam between a conversation and playback.

The WebRTC outbound track implements it (paced, encoded, counting what it actually sent); the
SDK's sink hands the audio to the application as ``audio`` events; a telephony stream would
pace it over its socket. ``flush`` is barge-in: drop what is queued at once and say how much
of the cut reply was really played, so the provider can be told exactly that.
"""

from __future__ import annotations

from typing import Protocol

from bridge.audio.playout import Playback


class PlaybackSink(Protocol):
    def push(self, data: bytes, item_id: str) -> None:
        """Queue reply audio of reply ``item_id``, in the conversation's output format."""

    def end_of_reply(self, item_id: str | None = None) -> None:
        """All audio of the reply has been pushed: play the rest without holding back."""

    def flush(self) -> Playback | None:
        """Drop everything queued; what was played of the reply that was cut, if any."""
        ...
