"""The provider contract every voice backend implements.

A provider is one live conversation with a model. The session feeds it PCM16 mono at
``input_rate`` and reads neutral events (:mod:`bridge.events`) from :meth:`Provider.events`
until that iterator ends. ``send_audio`` never blocks: a provider whose socket is slow queues
a bounded amount and drops the oldest audio, so a stalled provider can't stall the peer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol

from ..audio.outbound import Playback
from ..config import Settings
from ..events import Event
from ..session_config import SessionConfig


class Provider(Protocol):
    name: str
    model: str
    input_rate: int
    """Sample rate (Hz) of the PCM16 mono audio ``send_audio`` takes."""

    async def connect(self) -> None:
        """Open the provider session; raises :class:`~bridge.errors.ProviderError`."""

    def send_audio(self, pcm: bytes) -> None:
        """Queue a chunk of user audio (PCM16 LE mono at ``input_rate``); never blocks."""

    async def send_text(self, text: str) -> None:
        """Add a typed user message and ask for a reply."""

    async def update_session(self, config: SessionConfig) -> None:
        """Apply a new session configuration (already merged and validated)."""

    async def interrupt(self, played: Playback | None) -> None:
        """The user barged in: playback was cut after ``played``; stop the reply."""

    async def close(self) -> None:
        """Close the provider session; idempotent. :meth:`events` then ends."""

    def events(self) -> AsyncIterator[Event]:
        """The provider's events, in order, until the session closes."""
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
