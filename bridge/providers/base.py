"""The provider contract every voice backend implements, and the options each one takes.

A provider is one live conversation with a model. Its conversation asks it which audio formats
it wants for the peer's codec (:meth:`Provider.configure_audio`), feeds it audio in that
format, hands it typed text, configuration and interrupts, and reads neutral events
(:mod:`bridge.core.events`) from :meth:`Provider.events` until that iterator ends.
``send_audio`` never blocks: a provider whose socket is slow queues a bounded amount and drops
the oldest audio, so a stalled provider can't stall the peer.

Providers get a small options object (credentials, URL, limits), never the service's settings:
the server builds them from its settings, the SDK from its engine.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from bridge.audio.format import AudioFormat
from bridge.audio.playout import Playback, PlayoutPolicy
from bridge.core.events import Event
from bridge.core.session_config import SessionConfig


class ConnectionObserver(Protocol):
    """What a provider reports about its connection (the realtime hooks' source)."""

    def opened(self, url: str) -> None: ...

    def frame(self, direction: Literal["in", "out"], size: int) -> None: ...

    def closed(self, code: int, reason: str) -> None: ...


class _Unobserved:
    def opened(self, url: str) -> None:
        pass

    def frame(self, direction: Literal["in", "out"], size: int) -> None:
        pass

    def closed(self, code: int, reason: str) -> None:
        pass


UNOBSERVED: ConnectionObserver = _Unobserved()


@dataclass(frozen=True)
class ProviderOptions:
    """What any provider may need; each provider's own options add to it."""

    api_key: str = field(default="", repr=False)
    url: str = ""


@dataclass(frozen=True)
class SocketOptions(ProviderOptions):
    """Providers that keep a WebSocket (:mod:`bridge.providers.connection`)."""

    ping_interval: float = 20.0  # seconds; a socket that stops answering is replaced
    reconnects: int = 3  # attempts after a transient drop
    audio_queue_ms: int = 5000  # user audio held while a socket is replaced


class Provider(Protocol):
    name: str
    model: str
    playout: PlayoutPolicy
    """How its replies are buffered before they play (pre-roll for slow producers)."""
    observer: ConnectionObserver

    def configure_audio(self, peer_codec: str) -> tuple[AudioFormat, AudioFormat]:
        """Formats (input, output) to use with a peer speaking ``peer_codec`` (``opus``,
        ``pcm16``, ``pcmu``, ``pcma``); called once, before :meth:`connect`."""
        ...

    async def connect(self) -> None:
        """Open the provider session; raises :class:`~bridge.core.errors.ProviderError`."""

    def send_audio(self, pcm: bytes) -> None:
        """Queue a chunk of user audio in the input format; never blocks."""

    async def commit_audio(self) -> None:
        """The user's audio turn is over (after all audio sent so far): answer it."""

    async def send_text(self, text: str, turn_complete: bool = True) -> None:
        """Add a typed user message; with ``turn_complete``, ask for a reply."""

    async def update_session(self, config: SessionConfig) -> SessionConfig:
        """Apply a new session configuration (already merged and validated); returns the one
        now in effect, which keeps what the provider cannot change mid-session (it reports
        that as a non-fatal ``error`` event)."""
        ...

    async def interrupt(self, played: Playback | None, cancel: bool = False) -> None:
        """The user barged in: playback was cut after ``played``. With ``cancel`` the provider
        has not stopped the reply itself (a client-initiated interrupt): stop it."""

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
    """How to build one kind of provider and whether it can be built with given options."""

    name: str
    default_model: str
    voices: tuple[str, ...]
    default_voice: str
    options: type[ProviderOptions]
    create: Callable[[str, SessionConfig, Any], Provider]
    unavailable_reason: Callable[[Any], str | None]
    models: Callable[[], list[dict[str, Any]]] = list
    """Models known here with their status and shutdown date (others may be asked for)."""
    notes: Callable[[str | None, Any], list[str]] = lambda model, options: []
    """Warnings for GET /providers and the startup log (e.g. a model near its shutdown)."""
