"""Provider ``openai``: the socket side of OpenAI Realtime.

:class:`OpenAIProvider` owns the WebSocket and nothing else: what to send and what a message
means is :class:`~bridge.providers.openai_protocol.OpenAIRealtimeProtocol`'s business. One loop
(:meth:`OpenAIProvider._run`) serves one socket at a time and replaces it when needed:

* **rollover** - before the session cap (60 min at OpenAI) a fresh session is opened at a turn
  boundary, configured, given the conversation text, and swapped in; the call never notices;
* **expiry** - on ``session_expired`` the same happens at once;
* **transient drops** (close 1006/1011, network errors, a silent socket) reconnect with
  jittered exponential backoff, at most ``provider_reconnects`` times;
* **fatal errors** (bad key, no quota, retired model) end the session with a clear error.

User audio waits in a bounded queue while a socket is being replaced (oldest dropped first),
so a slow or absent provider never blocks the peer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections import deque
from collections.abc import AsyncIterator
from enum import Enum
from typing import Any
from urllib.parse import quote

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from .. import events as ev
from ..audio.format import PCM16_24K, PCMA_8K, PCMU_8K, AudioFormat
from ..audio.playout import Playback, PlayoutPolicy
from ..config import Settings
from ..errors import ProviderError
from ..session_config import SessionConfig
from .openai_protocol import OpenAIRealtimeProtocol

log = logging.getLogger(__name__)
# websockets logs handshake headers (the API key) at DEBUG: give it a logger that never does.
_ws_log = logging.getLogger("bridge.providers.websocket")
_ws_log.setLevel(logging.INFO)

DEFAULT_MODEL = "gpt-realtime"
VOICES = ("alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar")
MAX_QUEUED_AUDIO = 250  # 20 ms chunks: 5 s of user audio while a socket is replaced
MAX_APPEND_CHUNKS = 5  # merge up to 100 ms per append when audio has queued up
OPEN_TIMEOUT_S = 10.0
CLOSE_TIMEOUT_S = 1.0  # a dead provider won't answer our close frame: don't wait long for it
TRANSIENT_CLOSE_CODES = {1001, 1006, 1011, 1012, 1013, 1014}
HTTP_FATAL = {
    401: ("invalid_api_key", "OpenAI rejected the API key (HTTP 401): check OPENAI_API_KEY"),
    403: ("permission_denied", "OpenAI refused access to this model (HTTP 403)"),
    404: ("model_not_found", "OpenAI does not know the model {model} (HTTP 404)"),
    429: ("insufficient_quota", "OpenAI refused the session: rate limit or quota (HTTP 429)"),
}


class _Outcome(Enum):
    CLOSED = "closed"  # we closed it
    FATAL = "fatal"
    TRANSIENT = "transient"
    EXPIRED = "expired"
    ROLLOVER = "rollover"


class OpenAIProvider:
    """See the module docstring."""

    name = "openai"
    playout = PlayoutPolicy()  # it sends faster than real time: play at once

    def __init__(self, settings: Settings, model: str, config: SessionConfig) -> None:
        self.model = model or DEFAULT_MODEL
        self._settings = settings
        self.protocol = OpenAIRealtimeProtocol(self.model, config)
        self._events: asyncio.Queue[ev.Event | None] = asyncio.Queue()
        self._control: deque[dict[str, Any]] = deque()
        self._audio: deque[bytes] = deque(maxlen=MAX_QUEUED_AUDIO)
        self._wake = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._ws: ClientConnection | None = None
        self._closed = False
        self.connections = 0
        self.reconnects = 0
        self.rollovers = 0
        self.dropped_audio_chunks = 0

    # -- Provider interface --------------------------------------------------------------------

    def configure_audio(self, peer_codec: str) -> tuple[AudioFormat, AudioFormat]:
        """G.711 peers get G.711 sessions (no resampling either way); others PCM16 24 kHz."""
        fmt = {"pcmu": PCMU_8K, "pcma": PCMA_8K}.get(peer_codec, PCM16_24K)
        self.protocol.input_format = self.protocol.output_format = fmt
        return fmt, fmt

    async def connect(self) -> None:
        ws = await self._open()
        self._runner = asyncio.get_running_loop().create_task(self._run(ws), name="openai-provider")

    def send_audio(self, pcm: bytes) -> None:
        if self._closed:
            return
        if len(self._audio) == self._audio.maxlen:
            self.dropped_audio_chunks += 1
        self._audio.append(pcm)
        self._wake.set()

    async def send_text(self, text: str) -> None:
        self._send(*self.protocol.user_text(text))

    async def update_session(self, config: SessionConfig) -> None:
        self._send(self.protocol.session_update(config))

    async def interrupt(self, played: Playback | None) -> None:
        message = self.protocol.truncate(played)
        if message is not None:
            self._send(message)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        runner, self._runner = self._runner, None
        if runner is not None and runner is not asyncio.current_task():
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await runner
        if self._ws is not None:
            await self._ws.close()
        self._events.put_nowait(None)

    def stats(self) -> dict[str, Any]:
        return {
            "connections": self.connections,
            "reconnects": self.reconnects,
            "rollovers": self.rollovers,
            "truncates_sent": self.protocol.truncates_sent,
            "truncate_rejections": self.protocol.truncate_rejections,
            "unknown_events": sum(self.protocol.unknown_events.values()),
            "dropped_audio_chunks": self.dropped_audio_chunks,
        }

    async def events(self) -> AsyncIterator[ev.Event]:
        while (event := await self._events.get()) is not None:
            yield event

    # -- socket side ---------------------------------------------------------------------------

    def _send(self, *messages: dict[str, Any]) -> None:
        self._control.extend(messages)
        self._wake.set()

    async def _open(self) -> ClientConnection:
        """A new, configured session: connect, send the configuration and the context."""
        url = f"{self._settings.openai_url}?model={quote(self.model)}"
        headers = {"Authorization": f"Bearer {self._settings.openai_api_key}"}
        if self.protocol.beta:
            headers["OpenAI-Beta"] = "realtime=v1"
        interval = self._settings.provider_ping_interval
        try:
            ws = await websockets.connect(
                url,
                additional_headers=headers,
                open_timeout=OPEN_TIMEOUT_S,
                ping_interval=interval,
                ping_timeout=interval,
                close_timeout=CLOSE_TIMEOUT_S,
                max_size=None,
                logger=_ws_log,
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            code, message = HTTP_FATAL.get(
                status, ("provider_unavailable", f"OpenAI refused the connection (HTTP {status})")
            )
            raise ProviderError(
                message.format(model=self.model), code=code, fatal=status in HTTP_FATAL
            ) from None
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            raise ProviderError(f"could not reach OpenAI: {type(exc).__name__}") from None
        self.connections += 1
        self.protocol.new_connection()
        self._control.clear()  # the context below replaces anything queued for the old socket
        for setup in [self.protocol.session_update(), *self.protocol.context_messages()]:
            await ws.send(json.dumps(setup))
        return ws

    async def _run(self, ws: ClientConnection) -> None:
        try:
            while True:
                outcome = await self._serve(ws)
                if outcome in (_Outcome.CLOSED, _Outcome.FATAL) or self._closed:
                    return
                replacement = await self._replace(outcome)
                if replacement is None:
                    return
                old, ws = ws, replacement
                await old.close()
        finally:
            if self._ws is not None:
                await self._ws.close()
            self._events.put_nowait(None)

    async def _serve(self, ws: ClientConnection) -> _Outcome:
        """Read and write one socket until it ends or should be replaced."""
        self._ws = ws
        loop = asyncio.get_running_loop()
        cap_at = loop.time() + self._settings.openai_session_cap
        writer = loop.create_task(self._write(ws), name="openai-writer")
        try:
            while True:
                try:
                    async with asyncio.timeout_at(cap_at if loop.time() < cap_at else None):
                        raw = await ws.recv()
                except TimeoutError:
                    raw = None
                if raw is not None:
                    for event in self.protocol.receive(raw):
                        self._events.put_nowait(event)
                conn = self.protocol.conn
                if conn.fatal is not None:
                    return _Outcome.FATAL
                if conn.expired:
                    return _Outcome.EXPIRED
                if loop.time() >= cap_at and self.protocol.at_turn_boundary:
                    return _Outcome.ROLLOVER
        except ConnectionClosed as exc:
            return self._closed_outcome(exc)
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await writer

    def _closed_outcome(self, exc: ConnectionClosed) -> _Outcome:
        if self._closed:
            return _Outcome.CLOSED
        if self.protocol.conn.expired:
            return _Outcome.EXPIRED
        code = exc.rcvd.code if exc.rcvd is not None else 1006
        reason = exc.rcvd.reason if exc.rcvd is not None else "no close frame"
        if code in TRANSIENT_CLOSE_CODES:
            log.warning("openai socket dropped (%d %s); reconnecting", code, reason)
            return _Outcome.TRANSIENT
        message = f"OpenAI closed the session ({code}{': ' + reason if reason else ''})"
        if code == 4000:
            message = (
                f"OpenAI closed the session (4000): the beta interface of {self.model} is retired"
            )
        self._events.put_nowait(ev.Error("provider_closed", message, fatal=True))
        return _Outcome.FATAL

    async def _write(self, ws: ClientConnection) -> None:
        """Control messages first, then queued audio (merged when it has piled up)."""
        while True:
            if self._control:
                await ws.send(json.dumps(self._control.popleft()))
            elif self._audio:
                chunks = [self._audio.popleft()]
                while self._audio and len(chunks) < MAX_APPEND_CHUNKS:
                    chunks.append(self._audio.popleft())
                await ws.send(json.dumps(self.protocol.append_audio(b"".join(chunks))))
            else:
                self._wake.clear()
                await self._wake.wait()

    async def _replace(self, outcome: _Outcome) -> ClientConnection | None:
        """A new socket for a rollover, an expiry or a drop; None when it could not be had."""
        if outcome is not _Outcome.TRANSIENT:
            self.rollovers += 1
            log.info("openai: renewing the session (%s)", outcome.value)
            with contextlib.suppress(ProviderError):
                return await self._open()
        attempts = self._settings.provider_reconnects
        for attempt in range(attempts):
            delay = min(0.25 * 2**attempt, 4.0) * random.uniform(0.5, 1.5)
            await asyncio.sleep(delay)
            try:
                ws = await self._open()
            except ProviderError as exc:
                if exc.fatal:
                    self._events.put_nowait(ev.Error(exc.code, exc.message, fatal=True))
                    return None
                continue
            self.reconnects += 1
            return ws
        self._events.put_nowait(
            ev.Error(
                "provider_unavailable",
                f"lost the connection to OpenAI and could not reconnect ({attempts} tries)",
                fatal=True,
            )
        )
        return None


def unavailable_reason(settings: Settings) -> str | None:
    return None if settings.openai_api_key else "OPENAI_API_KEY is not set"
