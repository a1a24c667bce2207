"""One emulated Gemini Live connection: client messages in, server messages out."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import math
import re
import secrets
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from bridge.audio.resample import Resampler
from bridge.audio.vad import EnergyVad, VadEvent
from bridge.emulators.gemini_rules import (
    MESSAGES,
    SETUP,
    ModelRules,
    Refusal,
    check_fields,
    check_setup_for_model,
    decode_bytes,
    invalid,
    model_rules,
    normalise,
    offset,
)
from bridge.emulators.gemini_session import GeminiEmulatorOptions, GeminiSessionRecord

OUTPUT_RATE = 24000
TOKENS_PER_SECOND = 25  # audio, both ways (protocols-2026.md §C.7)
_RATE = re.compile(r"rate=(\d+)")


def audio_tokens(ms: float) -> int:
    return math.ceil(ms * TOKENS_PER_SECOND / 1000)


class GeminiConnection:
    """The protocol state of one emulated connection."""

    def __init__(
        self,
        options: GeminiEmulatorOptions,
        take_fault: Callable[[str], Any],
        handles: dict[str, tuple[GeminiSessionRecord, int, int]],
        ws: ServerConnection,
        rec: GeminiSessionRecord,
    ):
        self.opt, self.ws, self.rec = options, ws, rec
        self._take_fault, self._handles = take_fault, handles
        self.index = 0  # setup is message 0
        self.rules: ModelRules = model_rules("")
        self.vad: EnergyVad | None = None
        self.speech = bytearray()
        self.speaking = False
        self.reply: asyncio.Task[None] | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.context_tokens = 0  # what the model holds: billed again as the prompt each turn
        self.heard_ms = 0.0  # user audio consumed on this connection

    # -- plumbing ------------------------------------------------------------------------------

    async def send(self, message: dict[str, Any]) -> None:
        self.rec.wire.append(("out", message))
        with contextlib.suppress(ConnectionClosed):
            await self.ws.send(json.dumps(message).encode())  # binary frames, like Gemini

    def _parse(self, raw: str | bytes) -> Any:
        message = json.loads(raw)
        self.rec.wire.append(("in", message))
        return normalise(message)

    async def run(self) -> None:
        try:
            await self._setup(self._parse(await self.ws.recv()))
            async for raw in self._arriving():
                self.index += 1
                await self._message(self._parse(raw))
        except Refusal as refusal:
            await self.ws.close(refusal.code, refusal.reason)
        except (ValueError, TypeError, AttributeError, KeyError, IndexError, RecursionError):
            await self.ws.close(1007, "Invalid JSON payload received.")
        except ConnectionClosed:
            pass
        finally:
            for task in [*self.tasks, *([self.reply] if self.reply else [])]:
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
            self.rec.close_code = self.ws.close_code
            self.rec.close_reason = self.ws.close_reason or ""

    async def _arriving(self) -> AsyncIterator[str | bytes]:
        """Client messages as the server gets them: ``uplink_delay_s`` after they arrived."""
        delay = self.opt.uplink_delay_s
        if delay <= 0:
            async for raw in self.ws:
                yield raw
            return
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, str | bytes] | None] = asyncio.Queue()

        async def read() -> None:
            try:
                async for raw in self.ws:
                    queue.put_nowait((loop.time(), raw))
            finally:
                queue.put_nowait(None)

        self.tasks.append(loop.create_task(read()))
        while (item := await queue.get()) is not None:
            await asyncio.sleep(max(item[0] + delay - loop.time(), 0))
            yield item[1]

    # -- setup ---------------------------------------------------------------------------------

    async def _setup(self, message: Any) -> None:
        if not isinstance(message, dict) or set(message) != {"setup"}:
            raise invalid()
        setup = message["setup"]
        check_fields(SETUP, setup, "setup")
        model = str(setup.get("model", ""))
        name = model.removeprefix("models/")
        if not model.startswith("models/") or (self.opt.models and name not in self.opt.models):
            raise Refusal(
                1008,
                f"{model} is not found for API version v1beta, or is not "
                "supported for bidiGenerateContent.",
            )
        self.rules = model_rules(name)
        check_setup_for_model(setup, self.rules)
        handle = (setup.get("sessionResumption") or {}).get("handle")
        if handle:
            if self._take_fault("reject_resume") or handle not in self._handles:
                raise invalid()
            parent, consumed, context = self._handles[handle]
            if parent.setup.get("model") != model:
                raise invalid("The model of a resumed session cannot change.")
            self.rec.resumed_from = (parent, consumed)
            self.context_tokens = context
        else:
            text = json.dumps(setup.get("systemInstruction") or "")
            self.context_tokens = len(text) // 4 + 20
        self.rec.setup = setup
        detection = (setup.get("realtimeInputConfig") or {}).get("automaticActivityDetection") or {}
        if not detection.get("disabled"):
            self.vad = EnergyVad(
                16000, threshold_dbfs=-45, stop_ms=int(detection.get("silenceDurationMs", 500))
            )
        await self.send({"setupComplete": {}})
        if "sessionResumption" in setup:
            await self._resumption_update()
            self.tasks.append(asyncio.get_running_loop().create_task(self._resumption_loop()))
        self._arm_faults()

    # -- client messages -----------------------------------------------------------------------

    async def _message(self, message: Any) -> None:
        if not isinstance(message, dict) or len(message) != 1:
            raise invalid()
        ((key, body),) = message.items()
        if key not in MESSAGES:
            raise invalid(
                f'Invalid JSON payload received. Unknown name "{key}": Cannot find field.'
            )
        if key == "contextUpdate" and not self.rules.context_update:
            raise invalid('Invalid JSON payload received. Unknown name "contextUpdate".')
        check_fields(MESSAGES[key], body, key)
        if key == "realtimeInput":
            await self._realtime(body)
            return
        self.rec.received.append(message)
        if key == "clientContent" and body.get("turnComplete"):
            text = " ".join(
                str(part.get("text", ""))
                for turn in body.get("turns") or []
                for part in turn.get("parts") or []
            )
            self.context_tokens += len(text) // 4 + 1
            await self._interrupt()
            self._start_reply(None, text)
        elif key == "contextUpdate" and "systemInstruction" in body:
            self.rec.instructions.append(body["systemInstruction"])

    async def _realtime(self, data: dict[str, Any]) -> None:
        blobs = [data["audio"]] if isinstance(data.get("audio"), dict) else []
        chunks = data.get("mediaChunks") or []
        blobs += [b for b in chunks if str(b.get("mimeType", "")).startswith("audio/")]
        if not blobs:
            self.rec.received.append({"realtimeInput": data})
            if isinstance(data.get("text"), str):
                self.context_tokens += len(data["text"]) // 4 + 1
                await self._interrupt()
                self._start_reply(None, data["text"])
            elif "activityStart" in data:  # manual turns: the client says when speech starts
                if self.vad is not None:
                    raise invalid("activityStart needs automaticActivityDetection disabled.")
                self.speaking, self.speech = True, bytearray()
                await self._interrupt()
            elif "activityEnd" in data:
                if self.vad is not None:
                    raise invalid("activityEnd needs automaticActivityDetection disabled.")
                await self._end_of_speech()
            elif data.get("audioStreamEnd") and self.speaking:  # the microphone went off
                await self._end_of_speech()
            return
        for blob in blobs:
            pcm = decode_bytes(blob.get("data", ""))
            if len(pcm) % 2:
                raise invalid("Invalid value at 'audio.data': PCM16 needs an even byte count.")
            match = _RATE.search(str(blob.get("mimeType", "")))
            rate = int(match.group(1)) if match else 16000
            self.rec.audio.append((self.index, pcm, rate))
            if rate != 16000:
                samples = np.frombuffer(pcm, dtype="<i2")
                pcm = Resampler(16000).resample_pcm(samples.astype(np.int16), rate).tobytes()
            await self._vad(pcm)

    async def _end_of_speech(self) -> None:
        self.speaking = False
        if self.vad is not None:
            self.vad.reset()
        speech, self.speech = bytes(self.speech), bytearray()
        self.context_tokens += audio_tokens(len(speech) / 32)
        self._start_reply(speech, None)

    async def _vad(self, pcm: bytes) -> None:
        self.heard_ms += len(pcm) / 32
        if self.vad is None:
            if self.speaking:  # between the client's activityStart and activityEnd
                self.speech += pcm
            return
        for i in range(0, len(pcm), 640):
            chunk = pcm[i : i + 640]
            change = self.vad.process(chunk)
            if self.speaking or change is VadEvent.START:
                self.speech += chunk
            if change is VadEvent.START:
                self.speaking = True
                await self._voice_activity("ACTIVITY_START")
                await self._interrupt()
            elif change is VadEvent.STOP:
                await self._voice_activity("ACTIVITY_END")
                await self._end_of_speech()

    async def _voice_activity(self, kind: str) -> None:
        emit = self.opt.voice_activity
        if emit if emit is not None else self.rules.voice_activity:
            await self.send({"voiceActivity": {"type": kind, "audioOffset": offset(self.heard_ms)}})

    # -- replies -------------------------------------------------------------------------------

    async def _interrupt(self) -> None:
        if self.reply is not None and not self.reply.done():
            self.reply.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.reply
            await self.send({"serverContent": {"interrupted": True}})
            await self.send(
                {"serverContent": {"turnComplete": True}, "usageMetadata": self._usage(0, 0)}
            )

    def _start_reply(self, speech: bytes | None, text: str | None) -> None:
        self.rec.replies.append((self.index, text if text is not None else "<audio>"))
        self.reply = asyncio.get_running_loop().create_task(self._reply(speech, text))

    def _reply_audio(self, speech: bytes | None, seconds: float) -> bytes:
        if self.opt.reply == "echo" and speech:
            pcm = np.frombuffer(speech, dtype="<i2").astype(np.int16)
            return Resampler(OUTPUT_RATE).resample_pcm(pcm, 16000).astype("<i2").tobytes()
        t = np.arange(int(seconds * OUTPUT_RATE)) / OUTPUT_RATE
        tone = np.sin(2 * np.pi * self.opt.tone_hz * t) * 0.3 * 32767
        return tone.astype("<i2").tobytes()

    async def _reply(self, speech: bytes | None, text: str | None) -> None:
        setup = self.rec.setup
        modalities = (setup.get("generationConfig") or {}).get("responseModalities") or ["AUDIO"]
        audio_mode = modalities == ["AUDIO"] and self.opt.reply != "text"
        if speech is not None and "inputAudioTranscription" in setup:
            ms = len(speech) * 1000 // 32000
            await self.send(
                {"serverContent": {"inputTranscription": {"text": f"(user audio, {ms} ms)"}}}
            )
        words = self.opt.reply_text.split()
        if self.rules.interaction_status and audio_mode:
            # Extended thinking: a short filler utterance, then the answer.
            filler = self._reply_audio(None, 0.2)
            thinking = {"interactionStatus": "IN_PROGRESS"}
            await self._stream(filler, ["Let", "me", "think."], thinking)
        audio = self._reply_audio(speech, self.opt.tone_seconds) if audio_mode else b""
        end: dict[str, Any] = {"interactionStatus": "IDLE"} if self.rules.interaction_status else {}
        if audio_mode:
            await self._stream(audio, words, end)
        else:
            for word in words:
                await self.send({"serverContent": {"modelTurn": {"parts": [{"text": word + " "}]}}})
            await self.send({"serverContent": {"generationComplete": True}})
            await self._finish(0, len(words), end)

    async def _stream(self, audio: bytes, words: list[str], end: dict[str, Any]) -> None:
        """Reply audio in ``chunk_ms`` parts, paced at ``speed``, with its transcript; models
        that bundle get the transcript and the end of the turn inside the audio messages."""
        transcribe = "outputAudioTranscription" in self.rec.setup
        step = OUTPUT_RATE * 2 * self.opt.chunk_ms // 1000
        chunks = [audio[i : i + step] for i in range(0, len(audio), step)]
        said: list[str | None] = [None] * len(chunks)
        if transcribe and chunks:  # a word a chunk, the rest with the last one
            for i, word in enumerate(words[: len(chunks)]):
                said[i] = " " + word
            if len(words) > len(chunks):
                said[-1] = f"{said[-1]} {' '.join(words[len(chunks) :])}"
        loop = asyncio.get_running_loop()
        started = loop.time()
        for n, chunk in enumerate(chunks):
            blob = {"mimeType": f"audio/pcm;rate={OUTPUT_RATE}", "data": _b64(chunk)}
            part = {"inlineData": blob}
            content: dict[str, Any] = {"modelTurn": {"parts": [part]}}
            if self.rules.bundles and said[n] is not None:
                content["outputTranscription"] = {"text": said[n]}
            if n == len(chunks) - 1 and self.rules.bundles:
                await self._finish(len(audio), 0, end, content)
            else:
                await self.send({"serverContent": content})
            if not self.rules.bundles and said[n] is not None:
                await self.send({"serverContent": {"outputTranscription": {"text": said[n]}}})
            if self.opt.speed > 0:  # paced against the start: no drift
                due = started + (n + 1) * self.opt.chunk_ms / 1000 / self.opt.speed
                await asyncio.sleep(max(due - loop.time(), 0))
        if transcribe and words and not chunks:
            await self.send({"serverContent": {"outputTranscription": {"text": " ".join(words)}}})
        if not (chunks and self.rules.bundles):
            await self.send({"serverContent": {"generationComplete": True}})
            await self._finish(len(audio), 0, end)

    async def _finish(
        self,
        audio_bytes: int,
        text_tokens: int,
        end: dict[str, Any],
        content: dict[str, Any] | None = None,
    ) -> None:
        """``turnComplete`` with this turn's usage (and, bundled, the last audio part)."""
        ms = audio_bytes * 1000 / (OUTPUT_RATE * 2)
        content = dict(content or {})
        if content:
            content["generationComplete"] = True
        content.update(turnComplete=True, **end)
        usage = self._usage(audio_tokens(ms), text_tokens)
        await self.send({"serverContent": content, "usageMetadata": usage})
        if end.get("interactionStatus") != "IN_PROGRESS":
            self.rec.turns += 1
            self.reply = None
            if self.opt.handle_after_turn_s > 0:
                await asyncio.sleep(self.opt.handle_after_turn_s)
            await self._resumption_update()

    def _usage(self, audio_out: int, text_out: int) -> dict[str, Any]:
        """The whole context is the prompt of every turn (Gemini re-bills it each time)."""
        prompt = self.context_tokens
        self.context_tokens += audio_out + text_out
        details = [{"modality": "AUDIO", "tokenCount": audio_out}] if audio_out else []
        if text_out or not audio_out:
            details.append({"modality": "TEXT", "tokenCount": text_out})
        return {
            "promptTokenCount": prompt,
            "responseTokenCount": audio_out + text_out,
            "totalTokenCount": prompt + audio_out + text_out,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
            "responseTokensDetails": details,
        }

    # -- resumption and faults -----------------------------------------------------------------

    async def _resumption_update(self) -> None:
        if self.reply is not None and not self.reply.done():
            await self.send({"sessionResumptionUpdate": {"resumable": False}})
            return
        handle = secrets.token_urlsafe(16)
        self._handles[handle] = (self.rec, self.index, self.context_tokens)
        await self.send({"sessionResumptionUpdate": {"newHandle": handle, "resumable": True}})

    async def _resumption_loop(self) -> None:
        while True:
            await asyncio.sleep(self.opt.resumption_interval_s)
            if self.reply is None or self.reply.done():
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
            delay = self._take_fault(name)
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


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
