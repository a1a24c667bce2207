"""Provider ``openai``: OpenAI Realtime over the shared socket loop.

What to send and what a message means is
:class:`~bridge.providers.openai_protocol.OpenAIRealtimeProtocol`'s business; the socket, its
renewal and reconnection are :class:`~bridge.providers.socket_loop.SocketProvider`'s. What is
particular to OpenAI:

* a session ends at 60 minutes, so before ``openai_session_cap`` (and at once on
  ``session_expired``) a fresh session is opened at a turn boundary, configured, and given the
  conversation so far as text; the call never notices;
* OpenAI sessions cannot be resumed, so a reconnection after a drop is re-seeded the same way;
* barge-in sends ``conversation.item.truncate`` with what the outbound track really played;
* models past their shutdown date are refused before any call starts, and those near it are
  flagged (:mod:`bridge.providers.models`).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from websockets.asyncio.client import ClientConnection

from bridge.audio.format import PCM16_24K, PCMA_8K, PCMU_8K, AudioFormat
from bridge.audio.playout import Playback, PlayoutPolicy
from bridge.core import events as ev
from bridge.core.errors import ProviderError
from bridge.core.session_config import SessionConfig
from bridge.providers.base import SocketOptions
from bridge.providers.connection import Outcome, SocketProvider
from bridge.providers.models import OPENAI_TRANSCRIPTION_MODELS, check_lifecycle, openai_lifecycle
from bridge.providers.openai_protocol import DEFAULT_TRANSCRIPTION_MODEL, OpenAIRealtimeProtocol

DEFAULT_MODEL = "gpt-realtime-2.1"
VOICES = ("alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar")
HTTP_FATAL = {
    401: ("invalid_api_key", "OpenAI rejected the API key (HTTP 401): check OPENAI_API_KEY"),
    403: ("permission_denied", "OpenAI refused access to this model (HTTP 403)"),
    404: ("model_not_found", "OpenAI does not know the model {model} (HTTP 404)"),
    429: ("insufficient_quota", "OpenAI refused the session: rate limit or quota (HTTP 429)"),
}


DEFAULT_URL = "wss://api.openai.com/v1/realtime"


@dataclass(frozen=True)
class OpenAIOptions(SocketOptions):
    url: str = DEFAULT_URL
    session_cap: float = 3300.0  # seconds before a session is renewed (OpenAI ends it at 60 min)
    transcription_model: str = DEFAULT_TRANSCRIPTION_MODEL


def model_notes(
    model: str | None, options: OpenAIOptions, today: datetime.date | None = None
) -> list[str]:
    """What GET /providers should warn about: the default and transcription models' dates."""
    today = today or datetime.date.today()
    model = model or DEFAULT_MODEL
    notes = []
    note = openai_lifecycle(model).warning(model, today)
    if note:
        notes.append(note)
    transcription = OPENAI_TRANSCRIPTION_MODELS.get(options.transcription_model)
    if transcription is not None:
        note = transcription.warning(options.transcription_model, today)
        if note:
            notes.append(f"input transcription: {note} (--openai-transcription-model)")
    return notes


class OpenAIProvider(SocketProvider):
    """See the module docstring."""

    name = "openai"
    playout = PlayoutPolicy()  # OpenAI sends faster than real time: play at once

    def __init__(self, model: str, config: SessionConfig, options: OpenAIOptions) -> None:
        super().__init__(model or DEFAULT_MODEL, options)
        self._openai = options
        self.raw_listener: Callable[[str | bytes], None] | None = None
        """Set by a pass-through transport: every server message, as received."""
        self._created_passed = False
        check_lifecycle("OpenAI", self.model, openai_lifecycle(self.model))
        self.protocol = OpenAIRealtimeProtocol(
            self.model, config, transcription_model=options.transcription_model
        )

    def configure_audio(self, peer_codec: str) -> tuple[AudioFormat, AudioFormat]:
        """G.711 peers get G.711 sessions (no resampling either way); others PCM16 24 kHz."""
        fmt = {"pcmu": PCMU_8K, "pcma": PCMA_8K}.get(peer_codec, PCM16_24K)
        self.protocol.input_format = self.protocol.output_format = fmt
        return fmt, fmt

    async def send_text(self, text: str, turn_complete: bool = True) -> None:
        self._send(*self.protocol.user_text(text, turn_complete))

    async def commit_audio(self) -> None:
        self._send_after_audio(*self.protocol.commit())

    async def update_session(self, config: SessionConfig) -> SessionConfig:
        messages, notices = self.protocol.update(config)
        self._send(*messages)
        for notice in notices:
            self._events.put_nowait(notice)
        return self.protocol.config

    async def interrupt(self, played: Playback | None, cancel: bool = False) -> None:
        if cancel and (message := self.protocol.cancel()) is not None:
            self._send(message)
        message = self.protocol.truncate(played)
        if message is not None:
            self._send(message)

    def relay(self, message: dict[str, Any]) -> None:
        """Pass a client's own OpenAI event through, after the audio it appended so far."""
        self._send_after_audio(self.protocol.relay(message))

    def stats(self) -> dict[str, Any]:
        return {
            **super().stats(),
            "truncates_sent": self.protocol.truncates_sent,
            "truncate_rejections": self.protocol.truncate_rejections,
            "queued_texts": self.protocol.queued_texts,
            "unknown_events": sum(self.protocol.unknown_events.values()),
        }

    @property
    def rollovers(self) -> int:
        return self.renewals

    # -- SocketProvider ------------------------------------------------------------------------

    async def _open(self) -> ClientConnection:
        headers = {"Authorization": f"Bearer {self._openai.api_key}"}
        url = f"{self._openai.url}?model={quote(self.model)}"
        ws = await self._connect(url, headers)
        setup = self.protocol.new_connection()
        # What was queued for the old socket and is still needed goes after the setup; kept
        # in the queue so that a failed attempt leaves it for the next one.
        carried = self.protocol.carried_over(list(self._control), setup)
        self._control.clear()
        self._control.extend(carried)
        for message in setup:
            await self._send_now(ws, message)
        return ws

    def _pass_on(self, raw: str | bytes) -> None:
        """Server events for a client that speaks this protocol itself. Errors are left out
        (they reach it as error events, redacted), and so is the ``session.created`` of a
        renewed session: to the client it is one session throughout."""
        kind = self.protocol.last_type
        if kind is None or kind == "error":
            return
        if kind == "session.created":
            if self._created_passed:
                return
            self._created_passed = True
        assert self.raw_listener is not None
        self.raw_listener(raw)

    def _refused(self, status: int) -> ProviderError:
        if status in HTTP_FATAL:
            code, message = HTTP_FATAL[status]
            return ProviderError(message.format(model=self.model), code=code, fatal=True)
        return super()._refused(status)

    def _receive(self, raw: str | bytes) -> list[ev.Event]:
        events = self.protocol.receive(raw)
        if self.raw_listener is not None:
            self._pass_on(raw)
        outbox = self.protocol.take_outbox()
        if outbox:
            self._send(*outbox)
        return events

    def _verdict(self, cap_reached: bool) -> Outcome | None:
        conn = self.protocol.conn
        if conn.fatal is not None:
            return Outcome.FATAL
        if conn.expired or (cap_reached and self.protocol.at_turn_boundary):
            return Outcome.RENEW
        return None

    def _session_cap(self) -> float | None:
        return self._openai.session_cap

    def _input_bytes_per_ms(self) -> int:
        return self.protocol.input_format.ms_to_bytes(1)

    def _audio_message(self, pcm: bytes) -> dict[str, Any]:
        return self.protocol.append_audio(pcm)

    def _fatal_close(self, code: int, reason: str) -> ev.Error | None:
        if code == 4000:
            message = (
                f"OpenAI closed the session (4000): the beta interface of {self.model} is retired"
            )
            return ev.Error("beta_api_shape_disabled", message, fatal=True)
        return super()._fatal_close(code, reason)


def unavailable_reason(options: OpenAIOptions) -> str | None:
    return None if options.api_key else "no OpenAI API key (OPENAI_API_KEY)"
