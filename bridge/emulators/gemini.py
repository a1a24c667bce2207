"""A local Gemini Live (``BidiGenerateContent``) server for tests, demos and benchmarks.

It speaks ``shared/protocols.md`` Part 2 over a real WebSocket: ``setup`` first (snake_case
or camelCase, unknown fields refused with 1007, unknown models with 1008), ``setupComplete``
and every later message as JSON in **binary** frames, an energy VAD on the 16 kHz uplink,
replies as 24 kHz ``inlineData`` parts (optionally slower than real time) with transcriptions,
``generationComplete`` / ``turnComplete`` + ``usageMetadata``, ``interrupted`` on barge-in,
and transparent session resumption (handles that carry ``lastConsumedClientMessageIndex``).
Scriptable faults: ``goAway``, a 1011 close, a quota close, a refused resumption.

Each connection is recorded (:class:`GeminiSessionRecord`); :meth:`GeminiSessionRecord.heard`
stitches the user audio a resumed session "remembers" so tests can check that none was lost
or repeated across a handover.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import math
import re
import secrets
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from ..audio.resample import Resampler
from ..audio.vad import EnergyVad, VadEvent
from .server import EmulatorServer

SETUP_FIELDS = {
    "model",
    "generationConfig",
    "systemInstruction",
    "tools",
    "realtimeInputConfig",
    "inputAudioTranscription",
    "outputAudioTranscription",
    "sessionResumption",
    "contextWindowCompression",
    "proactivity",
    "historyConfig",
    "safetySettings",
    "explicitVadSignal",
    "avatarConfig",
}
CLIENT_FIELDS = {"setup", "clientContent", "realtimeInput", "toolResponse"}
OUTPUT_RATE = 24000
_RATE = re.compile(r"rate=(\d+)")


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def normalise(value: Any) -> Any:
    """proto3-JSON accepts snake_case too: turn every key into camelCase."""
    if isinstance(value, dict):
        return {camel(k): normalise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalise(v) for v in value]
    return value


@dataclass
class GeminiEmulatorOptions:
    """Replies and faults (each fault fires once)."""

    reply: str = "tone"  # tone | echo | text
    tone_hz: float = 660.0
    tone_seconds: float = 1.0
    reply_text: str = "Hello from the Gemini emulator."
    speed: float = 4.0  # reply audio per wall-clock second; 0.8 is slower than real time
    chunk_ms: int = 40
    api_keys: tuple[str, ...] = ()  # accepted keys; empty accepts any non-empty key
    models: tuple[str, ...] = ()  # accepted models (without "models/"); empty accepts any
    resumption_interval_s: float = 0.25
    go_away_after_s: float | None = None
    go_away_time_left_s: float = 1.0
    close_1011_after_s: float | None = None
    quota_close_after_s: float | None = None
    reject_resume: bool = False


@dataclass
class GeminiSessionRecord:
    """One connection as the emulator saw it."""

    setup: dict[str, Any] = field(default_factory=dict)
    received: list[dict[str, Any]] = field(default_factory=list)  # all but audio
    audio: list[tuple[int, bytes, int]] = field(default_factory=list)  # (index, pcm, rate)
    resumed_from: tuple[GeminiSessionRecord, int] | None = None
    close_code: int | None = None
    close_reason: str = ""
    turns: int = 0

    def heard(self, upto: int | None = None) -> bytes:
        """The user audio this session's state includes, across resumptions, in order."""
        base = b""
        if self.resumed_from is not None:
            parent, consumed = self.resumed_from
            base = parent.heard(consumed)
        return base + b"".join(pcm for i, pcm, _ in self.audio if upto is None or i <= upto)


class _Close(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


class _GeminiConnection:
    """The protocol state of one emulated connection."""

    def __init__(self, emu: GeminiEmulator, ws: ServerConnection, rec: GeminiSessionRecord):
        self.emu, self.opt, self.ws, self.rec = emu, emu.options, ws, rec
        self.index = 0  # setup is message 0
        self.vad: EnergyVad | None = None
        self.speech = bytearray()
        self.speaking = False
        self.reply: asyncio.Task[None] | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.prompt_tokens = 0

    async def send(self, message: dict[str, Any]) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self.ws.send(json.dumps(message).encode())  # binary frames, like Gemini

    async def run(self) -> None:
        try:
            await self._setup(normalise(json.loads(await self.ws.recv())))
            async for raw in self.ws:
                self.index += 1
                await self._message(normalise(json.loads(raw)))
        except _Close as close:
            await self.ws.close(close.code, close.reason)
        except (ValueError, TypeError):
            await self.ws.close(1007, "Invalid JSON payload received.")
        except ConnectionClosed:
            pass
        finally:
            for task in [*self.tasks, *([self.reply] if self.reply else [])]:
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
            self.rec.close_code, self.rec.close_reason = (
                self.ws.close_code,
                self.ws.close_reason or "",
            )

    async def _setup(self, message: Any) -> None:
        if not isinstance(message, dict) or set(message) != {"setup"}:
            raise _Close(1007, "Request contains an invalid argument.")
        setup = message["setup"]
        for key in setup:
            if key not in SETUP_FIELDS:
                raise _Close(
                    1007,
                    f'Invalid JSON payload received. Unknown name "{key}" at '
                    "'setup': Cannot find field.",
                )
        model = str(setup.get("model", ""))
        name = model.removeprefix("models/")
        if not model.startswith("models/") or (self.opt.models and name not in self.opt.models):
            raise _Close(
                1008,
                f"{model} is not found for API version v1beta, or is not "
                "supported for bidiGenerateContent.",
            )
        handle = (setup.get("sessionResumption") or {}).get("handle")
        if handle:
            if self.emu.take_fault("reject_resume") or handle not in self.emu.handles:
                raise _Close(1007, "Request contains an invalid argument.")
            self.rec.resumed_from = self.emu.handles[handle]
        self.rec.setup = setup
        detection = (setup.get("realtimeInputConfig") or {}).get("automaticActivityDetection") or {}
        if not detection.get("disabled"):
            self.vad = EnergyVad(
                16000, threshold_dbfs=-45, stop_ms=int(detection.get("silenceDurationMs", 500))
            )
        text = json.dumps(setup.get("systemInstruction") or "")
        self.prompt_tokens = len(text) // 4 + 20
        await self.send({"setupComplete": {}})
        if "sessionResumption" in setup:
            await self._resumption_update()
            self.tasks.append(asyncio.get_running_loop().create_task(self._resumption_loop()))
        self._arm_faults()

    async def _message(self, message: Any) -> None:
        if not isinstance(message, dict) or len(message) != 1 or not set(message) <= CLIENT_FIELDS:
            raise _Close(1007, "Request contains an invalid argument.")
        if "setup" in message:
            raise _Close(1007, "Request contains an invalid argument.")
        if "realtimeInput" in message:
            await self._realtime(message["realtimeInput"])
            return
        self.rec.received.append(message)
        content = message.get("clientContent")
        if isinstance(content, dict) and content.get("turnComplete"):
            await self._interrupt()
            self._start_reply(None)

    async def _realtime(self, data: dict[str, Any]) -> None:
        blobs = [data["audio"]] if isinstance(data.get("audio"), dict) else []
        blobs += [
            b
            for b in data.get("mediaChunks") or []
            if str(b.get("mimeType", "")).startswith("audio/")
        ]
        if not blobs:
            self.rec.received.append({"realtimeInput": data})
            if isinstance(data.get("text"), str):
                await self._interrupt()
                self._start_reply(None)
            return
        for blob in blobs:
            pcm = base64.b64decode(blob.get("data", ""))
            match = _RATE.search(str(blob.get("mimeType", "")))
            rate = int(match.group(1)) if match else 16000
            self.rec.audio.append((self.index, pcm, rate))
            if rate != 16000:
                samples = np.frombuffer(pcm, dtype="<i2")
                pcm = Resampler(16000).resample_pcm(samples.astype(np.int16), rate).tobytes()
            await self._vad(pcm)

    async def _vad(self, pcm: bytes) -> None:
        if self.vad is None:
            return
        for i in range(0, len(pcm), 640):
            chunk = pcm[i : i + 640]
            change = self.vad.process(chunk)
            if self.speaking or change is VadEvent.START:
                self.speech += chunk
            if change is VadEvent.START:
                self.speaking = True
                await self._interrupt()
            elif change is VadEvent.STOP:
                self.speaking = False
                self._start_reply(bytes(self.speech))
                self.speech = bytearray()

    async def _interrupt(self) -> None:
        if self.reply is not None and not self.reply.done():
            self.reply.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.reply
            await self.send({"serverContent": {"interrupted": True}})
            await self.send(
                {"serverContent": {"turnComplete": True}, "usageMetadata": self._usage(0, 0)}
            )

    def _start_reply(self, speech: bytes | None) -> None:
        self.reply = asyncio.get_running_loop().create_task(self._reply(speech))

    def _reply_audio(self, speech: bytes | None) -> bytes:
        if self.opt.reply == "echo" and speech:
            pcm = np.frombuffer(speech, dtype="<i2").astype(np.int16)
            return Resampler(OUTPUT_RATE).resample_pcm(pcm, 16000).astype("<i2").tobytes()
        t = np.arange(int(self.opt.tone_seconds * OUTPUT_RATE)) / OUTPUT_RATE
        tone = np.sin(2 * np.pi * self.opt.tone_hz * t) * 0.3 * 32767
        return tone.astype("<i2").tobytes()

    async def _reply(self, speech: bytes | None) -> None:
        setup = self.rec.setup
        modalities = (setup.get("generationConfig") or {}).get("responseModalities") or ["AUDIO"]
        audio_mode = modalities == ["AUDIO"] and self.opt.reply != "text"
        if speech is not None and "inputAudioTranscription" in setup:
            ms = len(speech) * 1000 // 32000
            await self.send(
                {"serverContent": {"inputTranscription": {"text": f"(user audio, {ms} ms)"}}}
            )
        words = self.opt.reply_text.split()
        audio = self._reply_audio(speech) if audio_mode else b""
        step = OUTPUT_RATE * 2 * self.opt.chunk_ms // 1000
        loop = asyncio.get_running_loop()
        started = loop.time()
        for n, i in enumerate(range(0, len(audio), step)):
            data = base64.b64encode(audio[i : i + step]).decode()
            part = {"inlineData": {"mimeType": f"audio/pcm;rate={OUTPUT_RATE}", "data": data}}
            await self.send({"serverContent": {"modelTurn": {"parts": [part]}}})
            if words and "outputAudioTranscription" in setup:
                word = words.pop(0)
                await self.send({"serverContent": {"outputTranscription": {"text": " " + word}}})
            if self.opt.speed > 0:  # paced against the start: no drift
                due = started + (n + 1) * self.opt.chunk_ms / 1000 / self.opt.speed
                await asyncio.sleep(max(due - loop.time(), 0))
        if not audio_mode:
            for word in words:
                await self.send({"serverContent": {"modelTurn": {"parts": [{"text": word + " "}]}}})
        elif words and "outputAudioTranscription" in setup:
            await self.send(
                {"serverContent": {"outputTranscription": {"text": " " + " ".join(words)}}}
            )
        await self.send({"serverContent": {"generationComplete": True}})
        speech_ms = len(speech or b"") * 1000 // 32000
        audio_ms = len(audio) * 1000 // (OUTPUT_RATE * 2)
        self.rec.turns += 1
        usage = self._usage(
            speech_ms, audio_ms, text_out=0 if audio_mode else len(self.opt.reply_text.split())
        )
        await self.send({"serverContent": {"turnComplete": True}, "usageMetadata": usage})
        await self._resumption_update()

    def _usage(self, speech_ms: int, audio_ms: int, text_out: int = 0) -> dict[str, Any]:
        audio_in = math.ceil(speech_ms * 32 / 1000)
        self.prompt_tokens += audio_in
        audio_out = math.ceil(audio_ms * 32 / 1000)
        text = self.prompt_tokens - audio_in
        return {
            "promptTokenCount": self.prompt_tokens,
            "responseTokenCount": audio_out + text_out,
            "totalTokenCount": self.prompt_tokens + audio_out + text_out,
            "promptTokensDetails": [
                {"modality": "TEXT", "tokenCount": text},
                {"modality": "AUDIO", "tokenCount": audio_in},
            ],
            "responseTokensDetails": [{"modality": "AUDIO", "tokenCount": audio_out}]
            if audio_out
            else [{"modality": "TEXT", "tokenCount": text_out}],
        }

    async def _resumption_update(self) -> None:
        if self.reply is not None and not self.reply.done():
            await self.send({"sessionResumptionUpdate": {"resumable": False}})
            return
        handle = secrets.token_urlsafe(16)
        self.emu.handles[handle] = (self.rec, self.index)
        await self.send(
            {
                "sessionResumptionUpdate": {
                    "newHandle": handle,
                    "resumable": True,
                    "lastConsumedClientMessageIndex": str(self.index),
                }
            }
        )

    async def _resumption_loop(self) -> None:
        while True:
            await asyncio.sleep(self.opt.resumption_interval_s)
            await self._resumption_update()

    def _arm_faults(self) -> None:
        loop = asyncio.get_running_loop()
        for name, action in (
            ("go_away_after_s", self._go_away),
            ("close_1011_after_s", lambda: self.ws.close(1011, "Internal error occurred.")),
            (
                "quota_close_after_s",
                lambda: self.ws.close(
                    1011,
                    "You exceeded your current "
                    "quota, please check your plan and billing details. RESOURCE_EXHAUSTED",
                ),
            ),
        ):
            delay = self.emu.take_fault(name)
            if delay is not None:
                self.tasks.append(loop.create_task(self._after(delay, action)))

    async def _after(self, delay: float, action: Any) -> None:
        await asyncio.sleep(delay)
        await action()

    async def _go_away(self) -> None:
        left = self.opt.go_away_time_left_s
        await self.send({"goAway": {"timeLeft": f"{left:g}s"}})
        await asyncio.sleep(left)
        await self.ws.close(1000, "")


class GeminiEmulator(EmulatorServer):
    """A WebSocket server on 127.0.0.1 speaking Gemini Live; see the module docstring."""

    options: GeminiEmulatorOptions

    PATH = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"

    def __init__(
        self, options: GeminiEmulatorOptions | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        super().__init__(host, port)
        self.options = options or GeminiEmulatorOptions()
        self.sessions: list[GeminiSessionRecord] = []
        self.handles: dict[str, tuple[GeminiSessionRecord, int]] = {}

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}{self.PATH}"

    def _check_request(self, conn: ServerConnection, request: Request) -> Response | None:
        if "BidiGenerateContent" not in urlsplit(request.path).path:
            return conn.respond(HTTPStatus.NOT_FOUND, "Not Found\n")
        return None

    def _key_ok(self, request: Request) -> bool:
        query = parse_qs(urlsplit(request.path).query)
        key = (query.get("key") or [""])[0] or request.headers.get("x-goog-api-key", "")
        return bool(key) and (not self.options.api_keys or key in self.options.api_keys)

    async def _handle(self, ws: ServerConnection) -> None:
        rec = GeminiSessionRecord()
        self.sessions.append(rec)
        assert ws.request is not None
        if not self._key_ok(ws.request):
            await ws.close(1007, "API key not valid. Please pass a valid API key.")
            rec.close_code = 1007
            return
        await _GeminiConnection(self, ws, rec).run()
