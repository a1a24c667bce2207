"""Provider ``gpt-live``: OpenAI GPT-Live (full duplex) over the shared socket loop.

What to send and what a message means is
:class:`~bridge.providers.gpt_live_protocol.GptLiveProtocol`'s business. What this side adds,
because GPT-Live has no turn events:

* **the input clock** (:meth:`GptLiveProvider._clock`): the model only speaks while audio
  arrives, so whenever the peer sends nothing (DTX, mute, loss, a paused client) silence is
  appended in real time; a peer sending faster than real time is never padded;
* **local barge-in**: every 20 ms the :class:`~.gpt_live_protocol.BargeIn` watch is asked
  whether the user is talking over a model that went quiet; then ``speechStarted`` and
  ``interrupted`` are emitted (local, not the server's) and playback is flushed. What the user
  heard is told to the model as silent context (``tell_heard``); ``speechStopped`` is the
  same local VAD hearing the user pause (it times the reply latency);
* the end of a reply is the model's output going quiet for ``reply_gap_ms`` (``turnComplete``);
* a graceful close: ``session.close``, then the final usage of ``session.closed`` (up to
  ``CLOSE_WAIT_S``), so the last seconds are billed too.

``openai/gpt-live-…`` names this provider too (see :func:`bridge.providers.create_provider`).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection

from bridge.audio.format import PCM16_24K, PCMA_8K, PCMU_8K, AudioFormat
from bridge.audio.playout import Playback, PlayoutPolicy
from bridge.core import events as ev
from bridge.core.errors import ProviderError
from bridge.core.session_config import SessionConfig
from bridge.providers.base import SocketOptions
from bridge.providers.connection import Outcome, SocketProvider
from bridge.providers.gpt_live_protocol import (
    MODELS,
    VOICES,
    BargeIn,
    GptLiveProtocol,
    level_dbfs,
)

DEFAULT_MODEL = "gpt-live-1.1"
DEFAULT_URL = "wss://api.openai.com/v1/live/sessions"
TICK_S = 0.02
CLOSE_WAIT_S = 2.0  # for session.closed (the final usage) after session.close
HTTP_FATAL = {
    401: ("invalid_api_key", "OpenAI rejected the API key (HTTP 401): check OPENAI_API_KEY"),
    403: ("permission_denied", "OpenAI refused access to GPT-Live (HTTP 403)"),
    429: ("insufficient_quota", "OpenAI refused the session: concurrency or quota (HTTP 429)"),
}

__all__ = ["DEFAULT_MODEL", "MODELS", "VOICES", "GptLiveOptions", "GptLiveProvider"]


@dataclass(frozen=True)
class GptLiveOptions(SocketOptions):
    url: str = DEFAULT_URL
    tell_heard: bool = True  # after a local flush, tell the model what the user heard
    quiet_ms: int = 150  # model output quiet this long while the user talks: flush
    min_speech_ms: int = 250  # shorter user sounds are back-channels: never flush
    reply_gap_ms: int = 800  # model output quiet this long: its reply is complete
    fill_after_ms: int = 60  # no peer audio for this long: the clock appends silence


def unavailable_reason(options: GptLiveOptions) -> str | None:
    return None if options.api_key else "no OpenAI API key (OPENAI_API_KEY)"


class GptLiveProvider(SocketProvider):
    """See the module docstring."""

    name = "gpt-live"
    playout = PlayoutPolicy()  # output arrives faster than real time

    def __init__(self, model: str, config: SessionConfig, options: GptLiveOptions) -> None:
        super().__init__(model or DEFAULT_MODEL, options)
        if self.model not in MODELS:
            raise ProviderError(
                f"unknown GPT-Live model {self.model!r} (known: {', '.join(MODELS)})",
                code="unknown_model",
                fatal=True,
            )
        self._live = options
        self.protocol = GptLiveProtocol(self.model, config, tell_heard=options.tell_heard)
        self.barge_in = BargeIn(min_speech_ms=options.min_speech_ms, quiet_ms=options.quiet_ms)
        self._clock_task: asyncio.Task[None] | None = None
        self._origin: float | None = None  # loop time the current session's clock began
        self._sent_ms = 0.0  # audio appended to it (the peer's and ours)
        self._peer_audio_at = 0.0
        self._session_closed = asyncio.Event()
        self.silence_ms = 0.0  # appended by the clock
        self.flushes = 0

    def configure_audio(self, peer_codec: str) -> tuple[AudioFormat, AudioFormat]:
        """One format both ways: G.711 for G.711 peers (no resampling), else PCM 24 kHz."""
        fmt = {"pcmu": PCMU_8K, "pcma": PCMA_8K}.get(peer_codec, PCM16_24K)
        self.protocol.fmt = fmt
        return fmt, fmt

    # -- Provider ------------------------------------------------------------------------------

    async def connect(self) -> None:
        await super().connect()
        if not self._closed:
            loop = asyncio.get_running_loop()
            self._clock_task = loop.create_task(self._clock(), name="gpt-live-clock")

    def send_audio(self, pcm: bytes) -> None:
        now = asyncio.get_running_loop().time()
        self._peer_audio_at = now
        if self.barge_in.user_audio(level_dbfs(pcm, self.protocol.fmt), now * 1000):
            self._events.put_nowait(ev.SpeechStopped())  # local VAD: the user paused
        self._sent_ms += self.protocol.fmt.bytes_to_ms(len(pcm))
        super().send_audio(pcm)

    async def commit_audio(self) -> None:
        """No commits in GPT-Live: the model decides when the user is done."""

    async def send_text(self, text: str, turn_complete: bool = True) -> None:
        self._send(self.protocol.user_text(text))

    async def update_session(self, config: SessionConfig) -> SessionConfig:
        messages, notices = self.protocol.update(config)
        self._send(*messages)
        for notice in notices:
            self._events.put_nowait(notice)
        return self.protocol.config

    async def interrupt(self, played: Playback | None, cancel: bool = False) -> None:
        """Playback was flushed (locally: GPT-Live has no cancel or truncate)."""
        message = self.protocol.heard(played)
        if message is not None:
            self._send(message)
        for event in self.protocol.cut():
            self._events.put_nowait(event)

    async def close(self) -> None:
        if self._closed:
            return
        if self._clock_task is not None:
            self._clock_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._clock_task
        if self._writing and self.protocol.conn.started:
            self.protocol.closing = True
            self._send(self.protocol.close())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CLOSE_WAIT_S):
                    await self._session_closed.wait()
        await super().close()

    def drain_usage(self) -> list[ev.Usage]:
        """Usage that arrived with ``session.closed``, after the conversation stopped
        reading (it prices them itself)."""
        usage = []
        while not self._events.empty():
            event = self._events.get_nowait()
            if isinstance(event, ev.Usage):
                usage.append(event)
        return usage

    def stats(self) -> dict[str, Any]:
        return {
            **super().stats(),
            "silence_appended_ms": round(self.silence_ms),
            "local_flushes": self.flushes,
            "delegations_answered": self.protocol.delegations,
            "unknown_events": sum(self.protocol.unknown_events.values()),
        }

    # -- the clock -----------------------------------------------------------------------------

    async def _clock(self) -> None:
        """Every 20 ms: keep the input clock running, and watch for barge-in and reply ends."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(TICK_S)
            now = loop.time()
            if self._origin is not None and self._writing:
                self._fill(now)
            for event in self._watch(now * 1000):
                self._events.put_nowait(event)

    def _fill(self, now: float) -> None:
        assert self._origin is not None
        if now - self._peer_audio_at < self._live.fill_after_ms / 1000:
            return  # the peer is sending: it is the clock
        deficit = (now - self._origin) * 1000 - self._sent_ms
        ms = int(min(deficit, 200) // 20 * 20)
        if ms <= 0:
            return
        fmt = self.protocol.fmt
        silence = bytes([0xFF if fmt.encoding == "pcmu" else 0xD5]) if fmt.is_g711 else b"\0"
        super().send_audio(silence * fmt.ms_to_bytes(ms))
        self._sent_ms += ms
        self.silence_ms += ms
        if self.barge_in.user_audio(-120.0, now * 1000):
            self._events.put_nowait(ev.SpeechStopped())

    def _watch(self, now_ms: float) -> list[ev.Event]:
        if self.barge_in.due(now_ms):
            self.flushes += 1
            return [ev.SpeechStarted(), ev.Interrupted()]
        last = self.barge_in.last_loud_output
        if last is not None and now_ms - last >= self._live.reply_gap_ms:
            return self.protocol.quiet()
        return []

    # -- SocketProvider ------------------------------------------------------------------------

    async def _open(self) -> ClientConnection:
        ws = await self._connect(self._live.url, {"Authorization": f"Bearer {self._live.api_key}"})
        # session.start first and alone: what was queued for an old session is dropped (its
        # audio belonged to that session's clock; the new one starts from the transcript).
        self._control.clear()
        self._audio.clear()
        self._audio_bytes = 0
        await self._send_now(ws, self.protocol.start())
        async with asyncio.timeout(15):
            while not self.protocol.conn.started:
                events, replies = self.protocol.receive(await ws.recv())
                for event in events:
                    if isinstance(event, ev.Error) and event.fatal:
                        await ws.close()
                        raise ProviderError(event.message, code=event.code, fatal=True)
                    self._events.put_nowait(event)
                self._control.extend(replies)
        self._origin = asyncio.get_running_loop().time()
        self._sent_ms = 0.0
        return ws

    def _receive(self, raw: str | bytes) -> list[ev.Event]:
        events, replies = self.protocol.receive(raw)
        self._send(*replies)
        now_ms = asyncio.get_running_loop().time() * 1000
        for event in events:
            if isinstance(event, ev.AudioOut):
                self.barge_in.model_audio(level_dbfs(event.pcm, self.protocol.fmt), now_ms)
        if self.protocol.conn.closed_reason is not None:
            self._session_closed.set()
        return events

    def _verdict(self, cap_reached: bool) -> Outcome | None:
        conn = self.protocol.conn
        if conn.closed_reason is not None and self.protocol.closing:
            return Outcome.CLOSED
        if conn.fatal is not None:
            return Outcome.FATAL
        if conn.expired:
            return Outcome.RENEW
        return None

    def _input_bytes_per_ms(self) -> int:
        return self.protocol.fmt.ms_to_bytes(1)

    def _audio_message(self, pcm: bytes) -> dict[str, Any]:
        return self.protocol.append_audio(pcm)

    def _refused(self, status: int) -> ProviderError:
        if status in HTTP_FATAL:
            code, message = HTTP_FATAL[status]
            return ProviderError(message, code=code, fatal=True)
        return super()._refused(status)
