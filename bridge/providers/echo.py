"""``echo``: the embedded local provider.

It needs no key and no network, so a new user hears something at once and tests have a
deterministic backend. An energy VAD finds the user's utterances; when one ends, the provider
plays it back (the same audio) as its reply and reports speechStarted / speechStopped /
transcript placeholders / turnComplete / usage, like a real provider would. Speaking while the
reply plays raises speechStarted, which makes the session flush playback (barge-in).
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from bridge.audio.format import PCM16_24K, AudioFormat
from bridge.audio.playout import Playback, PlayoutPolicy
from bridge.audio.vad import EnergyVad, VadEvent
from bridge.core import events as ev
from bridge.core.session_config import SessionConfig
from bridge.providers.base import UNOBSERVED, ConnectionObserver, ProviderOptions

RATE = 24000
CHUNK_BYTES = RATE * 2 * 20 // 1000  # 20 ms of PCM16
PREROLL_MS = 200
VOICES = ("echo",)


@dataclass(frozen=True)
class EchoOptions(ProviderOptions):
    url: str = "local://echo"
    threshold_dbfs: float = -45.0  # the level that counts as speech
    silence_ms: int = 500  # the pause that ends an utterance
    max_utterance_ms: int = 30_000  # the longest utterance it keeps to replay


class EchoProvider:
    name = "echo"
    playout = PlayoutPolicy()  # it sends faster than real time: play at once

    def __init__(self, model: str, config: SessionConfig, options: EchoOptions) -> None:
        self.model = model or "echo"
        self.config = config
        self.observer: ConnectionObserver = UNOBSERVED
        self._options = options
        self._vad = EnergyVad(
            RATE, threshold_dbfs=options.threshold_dbfs, stop_ms=options.silence_ms
        )
        self._max_bytes = RATE * 2 * options.max_utterance_ms // 1000
        self._silence_bytes = RATE * 2 * options.silence_ms // 1000
        self._preroll: deque[bytes] = deque(maxlen=PREROLL_MS // 20)
        self._utterance = bytearray()
        self._typed: list[str] = []  # text of a turn not yet complete
        self._events: asyncio.Queue[ev.Event | None] = asyncio.Queue()
        self._turns = itertools.count(1)
        self._closed = False

    def configure_audio(self, peer_codec: str) -> tuple[AudioFormat, AudioFormat]:
        return PCM16_24K, PCM16_24K

    async def connect(self) -> None:
        self.observer.opened(self._options.url)
        self._emit(ev.Open())

    def send_audio(self, pcm: bytes) -> None:
        if self._closed:
            return
        if self.config.turn_detection.type == "none":  # manual turns: keep all until commit
            if len(self._utterance) < self._max_bytes:
                self._utterance += pcm
            return
        change = self._vad.process(pcm)
        if change is VadEvent.START:
            self._utterance = bytearray(b"".join(self._preroll))
            self._preroll.clear()
            self._emit(ev.SpeechStarted())
        if self._vad.speaking or change is VadEvent.STOP:
            if len(self._utterance) < self._max_bytes:
                self._utterance += pcm
        else:
            self._preroll.append(pcm)
        if change is VadEvent.STOP:
            self._emit(ev.SpeechStopped())
            self._reply(bytes(self._utterance))
            self._utterance = bytearray()

    async def commit_audio(self) -> None:
        """The end of a manual turn: reply with all of it."""
        utterance, self._utterance = bytes(self._utterance), bytearray()
        self._reply(utterance, trailing_silence=False)

    def _reply(self, utterance: bytes, trailing_silence: bool = True) -> None:
        # The last ``silence`` of a VAD utterance is the pause that ended it: don't replay it.
        cut = self._silence_bytes if trailing_silence else 0
        speech = utterance[: max(len(utterance) - cut, 0)]
        seconds = len(speech) / (RATE * 2)
        item_id = f"echo_{next(self._turns)}"
        self._emit(ev.Transcript("user", f"({seconds:.1f} s of speech)", final=True))
        audio_out = "audio" in self.config.output_modalities
        if audio_out:
            for i in range(0, len(speech), CHUNK_BYTES):
                self._emit(ev.AudioOut(speech[i : i + CHUNK_BYTES], RATE, item_id))
            self._emit(ev.AudioDone(item_id))
            self._emit(ev.Transcript("assistant", f"(echo of {seconds:.1f} s)", final=True))
        else:
            self._emit(ev.TextDelta(f"(you spoke for {seconds:.1f} s)"))
        self._emit(ev.TurnComplete())
        self._emit(
            ev.Usage(
                {
                    "input_audio_seconds": round(seconds, 3),
                    "output_audio_seconds": round(seconds if audio_out else 0.0, 3),
                }
            )
        )

    async def send_text(self, text: str, turn_complete: bool = True) -> None:
        self._typed.append(text)
        if not turn_complete:
            return
        # No user transcript: as with the real providers, a typed message is the client's own
        # text (it shows it already); only speech is transcribed.
        text, self._typed = " ".join(self._typed), []
        self._emit(ev.TextDelta(f"You said: {text}"))
        self._emit(ev.TurnComplete())
        self._emit(ev.Usage({"input_text_chars": len(text)}))

    async def update_session(self, config: SessionConfig) -> SessionConfig:
        self.config = config
        return config

    async def interrupt(self, played: Playback | None, cancel: bool = False) -> None:
        """Nothing to cancel: the whole echo reply is queued at once and the session flushed it."""

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.observer.closed(1000, "closed by the bridge")
            self._events.put_nowait(None)

    def _emit(self, event: ev.Event) -> None:
        if not self._closed:
            self._events.put_nowait(event)

    def stats(self) -> dict[str, Any]:
        return {}

    async def events(self) -> AsyncIterator[ev.Event]:
        while (event := await self._events.get()) is not None:
            yield event


def unavailable_reason(options: EchoOptions) -> str | None:
    return None
