"""Provider ``gemini``: Gemini Live (``BidiGenerateContent``, Developer API) over the shared
socket loop.

What is particular to Gemini:

* the server's first word is ``setupComplete``; nothing may be sent before it;
* user audio goes up as 16 kHz PCM16, replies come down as 24 kHz, often slower than real
  time: replies get an adaptive pre-roll (:mod:`bridge.audio.playout`) so they play smoothly;
* a connection lasts about 10 minutes and ends with a ``goAway``. The bridge then opens the
  successor with the newest resumption handle (at the next turn boundary once the handle that
  covers the last finished turn has arrived, or before the time runs out), replays what the
  handle does not cover (see :mod:`bridge.providers.gemini_protocol`), and closes the old
  socket: the WebRTC peer hears nothing of it. A transient drop resumes the same way. The
  conversation is never re-sent: the handle carries it. A configuration change that the model
  cannot take mid-session (``contextUpdate`` only carries instructions, on 3.8 Live) is applied
  the same way;
* errors arrive as close codes with reasons (1007 bad request or key, 1008 unknown model,
  1011 with RESOURCE_EXHAUSTED for quota): those become clear ``error`` events; a resumption
  the server refuses ends the session with one.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from bridge.audio.format import PCM16_16K, PCM16_24K, AudioFormat
from bridge.audio.playout import Playback, PlayoutPolicy
from bridge.core import events as ev
from bridge.core.errors import ProviderError
from bridge.core.session_config import SessionConfig
from bridge.providers.base import SocketOptions
from bridge.providers.connection import OPEN_TIMEOUT_S, Outcome, SocketProvider
from bridge.providers.gemini_protocol import GeminiLiveProtocol
from bridge.providers.models import check_lifecycle, gemini_model

log = logging.getLogger(__name__)

DEFAULT_MODEL = "gemini-3.8-live"
VOICES = (
    "Puck", "Charon", "Kore", "Fenrir", "Aoede", "Leda", "Orus", "Zephyr",
    "Achernar", "Achird", "Algenib", "Algieba", "Alnilam", "Autonoe", "Callirrhoe", "Despina",
    "Enceladus", "Erinome", "Gacrux", "Iapetus", "Laomedeia", "Pulcherrima", "Rasalgethi",
    "Sadachbia", "Sadaltager", "Schedar", "Sulafat", "Umbriel", "Vindemiatrix", "Zubenelgenubi",
)  # fmt: skip
QUOTA_WORDS = ("RESOURCE_EXHAUSTED", "quota", "exceeded")


DEFAULT_URL = (
    "wss://generativelanguage.googleapis.com/ws/"
    "google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
)


@dataclass(frozen=True)
class GeminiOptions(SocketOptions):
    url: str = DEFAULT_URL
    resume_overlap_ms: int = 500  # audio sent just before a handle arrived, replayed
    handle_wait: float = 2.0  # seconds a handover waits for the handle covering a turn


def model_notes(
    model: str | None, options: GeminiOptions, today: datetime.date | None = None
) -> list[str]:
    today = today or datetime.date.today()
    model = model or DEFAULT_MODEL
    note = gemini_model(model).lifecycle.warning(model, today)
    return [note] if note else []


class GeminiProvider(SocketProvider):
    """See the module docstring."""

    name = "gemini"
    # Gemini audio can arrive slower than real time: hold a new reply back until it can play
    # through (at 0.8x, a 4 s horizon covers replies of about 20 s), at most 1.5 s.
    playout = PlayoutPolicy(base_preroll_ms=120, horizon_ms=4000, max_preroll_ms=1500)

    def __init__(self, model: str, config: SessionConfig, options: GeminiOptions) -> None:
        super().__init__(model or DEFAULT_MODEL, options)
        self._gemini = options
        check_lifecycle("Gemini", self.model, gemini_model(self.model).lifecycle)
        self.protocol = GeminiLiveProtocol(self.model, config, overlap_ms=options.resume_overlap_ms)
        self._handover_at: float | None = None
        self._due_since: float | None = None
        self._reconfigure = False
        self.resumes = 0
        self.replayed = 0

    def configure_audio(self, peer_codec: str) -> tuple[AudioFormat, AudioFormat]:
        return PCM16_16K, PCM16_24K

    def send_audio(self, pcm: bytes) -> None:
        start = self.protocol.activity_start()
        if start is not None:  # manual turns: open one before its first audio
            self._send_after_audio(start)
        super().send_audio(pcm)

    async def send_text(self, text: str, turn_complete: bool = True) -> None:
        self._send(self.protocol.user_text(text, turn_complete))

    async def commit_audio(self) -> None:
        self._send_after_audio(self.protocol.commit())

    async def update_session(self, config: SessionConfig) -> SessionConfig:
        """Instructions go in a ``contextUpdate`` where the model takes one; anything else
        needs a new ``setup``: the session is resumed with it at the next turn boundary (the
        handle keeps the conversation)."""
        messages, resume = self.protocol.update(config)
        self._send(*messages)
        if resume:
            self._reconfigure = True
            self._poke()
        return config

    async def interrupt(self, played: Playback | None, cancel: bool = False) -> None:
        """Nothing to tell: Gemini detects barge-in itself and reports ``interrupted``, and it
        has no message that stops a reply without starting another (a client interrupt only
        stops playback here)."""

    def stats(self) -> dict[str, Any]:
        return {
            **super().stats(),
            "resumes": self.resumes,
            "replayed_messages": self.replayed,
            "replay_pending": self.protocol.replay_size,
            "dropped_turns": self.protocol.dropped_turns,
            "unknown_events": sum(self.protocol.unknown_events.values()),
        }

    # -- SocketProvider ------------------------------------------------------------------------

    async def _open(self) -> ClientConnection:
        key = quote(self._gemini.api_key, safe="")
        ws = await self._connect(f"{self._gemini.url}?key={key}", {})
        resuming = self.protocol.handle is not None
        if not resuming and self.connections > 1:
            log.warning("gemini: no resumption handle yet; the new session starts afresh")
        replay = self.protocol.new_connection()
        self._handover_at = self._due_since = None
        self._reconfigure = False
        # Queued for the old socket: input still goes (after the replay); a contextUpdate is
        # superseded by the setup. Kept in the queue, so a failed attempt leaves it in place.
        carried = [m for m in self._control if "contextUpdate" not in m]
        self._control.clear()
        self._control.extend(carried)
        try:
            await self._send_now(ws, self.protocol.setup())
            async with asyncio.timeout(OPEN_TIMEOUT_S):
                while not self.protocol.conn.ready:
                    for event in self.protocol.receive(await ws.recv()):
                        self._events.put_nowait(event)
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd is not None else 1006
            reason = exc.rcvd.reason if exc.rcvd is not None else ""
            if resuming and code in (1007, 1008):
                raise ProviderError(
                    f"Gemini refused to resume the session ({code}: {reason})",
                    code="resume_rejected",
                    fatal=True,
                ) from None
            error = self._fatal_close(code, reason)
            if error is not None:
                raise ProviderError(error.message, code=error.code, fatal=True) from None
            raise ProviderError(f"Gemini closed during setup ({code})") from None
        except TimeoutError:
            await ws.close()
            raise ProviderError("Gemini did not complete the setup in time") from None
        dropped = self.protocol.dropped_turns
        self.protocol.set_up()
        if self.protocol.dropped_turns > dropped:
            log.warning(
                "gemini: resumed before the handle covering the last turn arrived; "
                "%d finished turn(s) are not replayed",
                self.protocol.dropped_turns - dropped,
            )
        for message in replay:
            await self._send_now(ws, message)
        self.replayed += len(replay)
        self.resumes += resuming
        return ws

    def _receive(self, raw: str | bytes) -> list[ev.Event]:
        events = self.protocol.receive(raw)
        self._send(*self.protocol.take_outbox())
        now = asyncio.get_running_loop().time()
        left = self.protocol.conn.go_away_in
        if left is not None and self._handover_at is None:
            # Hand over at the next turn boundary, or while there is still time.
            self._handover_at = now + max(min(left - 5.0, left * 0.8), 0.0)
        if not self.protocol.handle_due:
            self._due_since = None
        elif self._due_since is None:
            self._due_since = now
        return events

    def _handle_ready(self) -> bool:
        """The newest handle covers every finished turn, or we waited long enough for it."""
        if self._due_since is None:
            return True
        waited = asyncio.get_running_loop().time() - self._due_since
        return waited >= self._gemini.handle_wait

    def _verdict(self, cap_reached: bool) -> Outcome | None:
        wanted = self._handover_at is not None or self._reconfigure
        if not wanted:
            return None
        if self._handover_at is not None and asyncio.get_running_loop().time() >= (
            self._handover_at
        ):
            return Outcome.RENEW  # out of time: go now, whatever is happening
        if self.protocol.at_turn_boundary and self._handle_ready():
            return Outcome.RENEW
        return None

    def _wake_at(self) -> float | None:
        times = [self._handover_at]
        if (self._handover_at is not None or self._reconfigure) and self._due_since is not None:
            times.append(self._due_since + self._gemini.handle_wait)
        present = [t for t in times if t is not None]
        return min(present) if present else None

    def _input_bytes_per_ms(self) -> int:
        return PCM16_16K.ms_to_bytes(1)

    def _audio_message(self, pcm: bytes) -> dict[str, Any]:
        return self.protocol.audio(pcm)

    def _sent(self, message: dict[str, Any]) -> None:
        self.protocol.sent(message)

    def _fatal_close(self, code: int, reason: str) -> ev.Error | None:
        detail = f"({code}{': ' + reason if reason else ''})"
        if code == 1007:
            kind = "invalid_api_key" if "API key" in reason else "invalid_argument"
            return ev.Error(kind, f"Gemini refused the request {detail}", fatal=True)
        if code == 1008:
            kind = "model_not_found" if "not found" in reason else "policy_violation"
            return ev.Error(kind, f"Gemini refused the session {detail}", fatal=True)
        if code == 1011 and any(word in reason for word in QUOTA_WORDS):
            message = f"Gemini closed the session: quota or concurrency limit reached {detail}"
            return ev.Error("quota_exceeded", message, fatal=True)
        return super()._fatal_close(code, reason)


def unavailable_reason(options: GeminiOptions) -> str | None:
    return None if options.api_key else "no Gemini API key (GEMINI_API_KEY or GOOGLE_API_KEY)"
