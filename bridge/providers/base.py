"""The provider contract every voice backend implements.

A provider is one live conversation with a model. Once the peer's codec is negotiated the
session asks it which audio formats it wants (:meth:`Provider.configure_audio`), feeds it audio
in that format and reads neutral events (:mod:`bridge.events`) from :meth:`Provider.events`
until that iterator ends. ``send_audio`` never blocks: a provider whose socket is slow queues
a bounded amount and drops the oldest audio, so a stalled provider can't stall the peer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from bridge.audio.format import AudioFormat
from bridge.audio.playout import Playback, PlayoutPolicy
from bridge.core.events import Event
from bridge.core.session_config import SessionConfig
from bridge.server.config import Settings


class Provider(Protocol):
    name: str
    model: str
    playout: PlayoutPolicy
    """How its replies are buffered before they play (pre-roll for slow producers)."""

    def configure_audio(self, peer_codec: str) -> tuple[AudioFormat, AudioFormat]:
        """Formats (input, output) to use with a peer speaking ``peer_codec`` (``opus``,
        ``pcmu``, ``pcma``); called once, before :meth:`connect`."""
        ...

    async def connect(self) -> None:
        """Open the provider session; raises :class:`~bridge.errors.ProviderError`."""

    def send_audio(self, pcm: bytes) -> None:
        """Queue a 20 ms chunk of user audio in the input format; never blocks."""

    async def send_text(self, text: str) -> None:
        """Add a typed user message and ask for a reply."""

    async def update_session(self, config: SessionConfig) -> SessionConfig:
        """Apply a new session configuration (already merged and validated); returns the one
        now in effect, which keeps what the provider cannot change mid-session (it reports
        that as a non-fatal ``error`` event)."""
        ...

    async def interrupt(self, played: Playback | None) -> None:
        """The user barged in: playback was cut after ``played``; stop the reply."""

    async def close(self) -> None:
        """Close the provider session; idempotent. :meth:`events` then ends."""

    def events(self) -> AsyncIterator[Event]:
        """The provider's events, in order, until the session closes."""
        ...

    def stats(self) -> dict[str, Any]:
        """Counters worth showing in ``GET /sessions`` (reconnects, drops...)."""
        ...


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """How to build one kind of provider and whether this deployment can."""

    name: str
    default_model: str
    voices: tuple[str, ...]
    default_voice: str
    create: Callable[[Settings, str, SessionConfig], Provider]
    unavailable_reason: Callable[[Settings], str | None]
    models: Callable[[], list[dict[str, Any]]] = list
    """Models known here with their status and shutdown date (others may be asked for)."""
    notes: Callable[[Settings], list[str]] = lambda settings: []
    """Warnings for GET /providers and the startup log (e.g. a model near its shutdown)."""
