"""A local OpenAI Realtime server (GA interface) for tests, demos and benchmarks.

It speaks the wire protocol of ``shared/protocols.md`` Part 1 over a real WebSocket:
``session.created`` / ``session.updated`` with the full session object, an energy VAD that
emits speech_started / speech_stopped / committed, replies (an echo of the user's audio, a
tone, or text) streamed as deltas in the documented order and ending with ``response.done``
and its usage, validation errors shaped like the real ones, truncate validation, and faults a
test can script: an invalid key, a 1011 close, ``session_expired``, a stall, and a barge-in.

Every connection is recorded (:class:`EmulatedSession`) so tests can assert on what the
bridge sent.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import copy
import itertools
import json
import logging
import math
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import numpy as np
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from ..audio import g711
from ..audio.format import AudioFormat
from ..audio.resample import Resampler
from ..audio.vad import EnergyVad, VadEvent

# websockets logs request headers (API keys) at DEBUG: use a logger that never does.
_ws_log = logging.getLogger("bridge.emulators.websocket")
_ws_log.setLevel(logging.INFO)

CLIENT_EVENTS = (
    "session.update",
    "input_audio_buffer.append",
    "input_audio_buffer.commit",
    "input_audio_buffer.clear",
    "conversation.item.create",
    "conversation.item.retrieve",
    "conversation.item.truncate",
    "conversation.item.delete",
    "response.create",
    "response.cancel",
    "output_audio_buffer.clear",
)
SESSION_KEYS = {
    "type",
    "model",
    "output_modalities",
    "instructions",
    "tools",
    "tool_choice",
    "max_output_tokens",
    "tracing",
    "truncation",
    "prompt",
    "include",
    "audio",
    "reasoning",
}
AUDIO_INPUT_KEYS = {"format", "transcription", "noise_reduction", "turn_detection"}
AUDIO_OUTPUT_KEYS = {"format", "voice", "speed"}
FORMATS = {
    "audio/pcm": AudioFormat("pcm16", 24000),
    "audio/pcmu": AudioFormat("pcmu", 8000),
    "audio/pcma": AudioFormat("pcma", 8000),
}
DEFAULT_INSTRUCTIONS = (
    "Your knowledge cutoff is 2023-10. You are a helpful, witty, and friendly AI."
)


def _id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


def default_session(model: str) -> dict[str, Any]:
    return {
        "type": "realtime",
        "object": "realtime.session",
        "id": _id("sess"),
        "model": model,
        "output_modalities": ["audio"],
        "instructions": DEFAULT_INSTRUCTIONS,
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
        "tracing": None,
        "truncation": "auto",
        "prompt": None,
        "expires_at": int(time.time()) + 3600,
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "transcription": None,
                "noise_reduction": None,
                "turn_detection": {
                    "type": "server_vad",
                    "threshold": 0.5,
                    "prefix_padding_ms": 300,
                    "silence_duration_ms": 200,
                    "idle_timeout_ms": None,
                    "create_response": True,
                    "interrupt_response": True,
                },
            },
            "output": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "voice": "alloy",
                "speed": 1.0,
            },
        },
        "include": None,
    }


@dataclass
class OpenAIEmulatorOptions:
    """What the emulator replies and which faults it injects (each fault fires once)."""

    reply: str = "echo"  # echo | tone | text
    tone_hz: float = 660.0
    tone_seconds: float = 1.0
    reply_text: str = "Hello! This is the OpenAI emulator speaking."
    speed: float = 4.0  # audio deltas per real-time second; 0 sends them as fast as possible
    delta_ms: int = 100
    api_keys: tuple[str, ...] = ()  # accepted keys; empty accepts any non-empty key
    accept_beta: bool = False
    invalid_key: bool = False
    close_1011_after_s: float | None = None
    session_expired_after_s: float | None = None
    stall_after_s: float | None = None
    barge_in_after_s: float | None = None  # fake user speech after a reply's first delta


@dataclass
class EmulatedSession:
    """One connection, as the emulator saw it."""

    model: str
    headers: dict[str, str]
    session: dict[str, Any]
    received: list[dict[str, Any]] = field(default_factory=list)
    audio: bytearray = field(default_factory=bytearray)  # appended input, as sent
    errors: list[dict[str, Any]] = field(default_factory=list)
    close_code: int | None = None
    generated_ms: dict[str, int] = field(default_factory=dict)

    @property
    def input_format(self) -> AudioFormat:
        return FORMATS[self.session["audio"]["input"]["format"]["type"]]

    @property
    def output_format(self) -> AudioFormat:
        return FORMATS[self.session["audio"]["output"]["format"]["type"]]

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.received if m.get("type") == kind]


class _Error(Exception):
    def __init__(self, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.param = code, message, param


class _Connection:
    """The protocol state of one emulated session."""

    def __init__(self, emulator: OpenAIEmulator, ws: ServerConnection, rec: EmulatedSession):
        self.emu, self.opt, self.ws, self.rec = emulator, emulator.options, ws, rec
        self.ids = itertools.count(1)
        self.buffer = bytearray()  # uncommitted input audio
        self.buffer_start_ms = 0  # session ms at the start of ``buffer``
        self.appended_ms = 0.0
        self.speech_start_ms = 0.0
        self.vad: EnergyVad | None = None
        self.user_item: str | None = None
        self.last_item: str | None = None
        self.response: asyncio.Task[None] | None = None
        self.response_id: str | None = None
        self.timers: list[asyncio.Task[None]] = []
        self.responses = 0
        self._setup_vad()

    # -- plumbing ------------------------------------------------------------------------------

    async def send(self, kind: str, **fields: Any) -> None:
        event = {"type": kind, "event_id": f"event_{next(self.ids):06d}", **fields}
        with contextlib.suppress(Exception):
            await self.ws.send(json.dumps(event))

    async def error(self, code: str, message: str, param: str | None, event_id: Any) -> None:
        error = {
            "type": "invalid_request_error",
            "code": code,
            "message": message,
            "param": param,
            "event_id": event_id,
        }
        self.rec.errors.append(error)
        await self.send("error", error=error)

    def _setup_vad(self) -> None:
        td = self.rec.session["audio"]["input"]["turn_detection"]
        if td is None:
            self.vad = None
            return
        threshold = float(td.get("threshold", 0.5))
        self.vad = EnergyVad(
            self.rec.input_format.rate,
            threshold_dbfs=-70 + 50 * threshold,  # 0.5 -> -45 dBFS
            start_ms=60,
            stop_ms=int(td.get("silence_duration_ms", 500)),
        )

    # -- client events -------------------------------------------------------------------------

    async def handle(self, raw: str | bytes) -> None:
        try:
            message = json.loads(raw)
        except ValueError as exc:
            await self.error("invalid_event", f"Invalid JSON in event: {exc}", None, None)
            return
        if not isinstance(message, dict):
            await self.error("invalid_event", "Events must be JSON objects.", None, None)
            return
        event_id = message.get("event_id")
        kind = message.get("type")
        if kind != "input_audio_buffer.append":
            self.rec.received.append(message)
        try:
            if kind is None:
                raise _Error("invalid_event", "The 'type' field is missing.")
            if kind not in CLIENT_EVENTS:
                supported = ", ".join(f"'{k}'" for k in CLIENT_EVENTS)
                raise _Error(
                    "invalid_value",
                    f"Invalid value: '{kind}'. Supported values are: {supported}.",
                    "type",
                )
            handler = getattr(self, "on_" + str(kind).replace(".", "_"), None)
            if handler is not None:
                await handler(message)
        except _Error as exc:
            await self.error(exc.code, exc.message, exc.param, event_id)

    async def on_session_update(self, m: dict[str, Any]) -> None:
        update = m.get("session")
        if not isinstance(update, dict):
            raise _Error(
                "missing_required_parameter", "Missing required parameter: 'session'.", "session"
            )
        if update.get("type") not in ("realtime",):
            raise _Error(
                "missing_required_parameter",
                "Missing required parameter: 'session.type'.",
                "session.type",
            )
        for key in update:
            if key not in SESSION_KEYS:
                raise _Error(
                    "unknown_parameter", f"Unknown parameter: 'session.{key}'.", f"session.{key}"
                )
        audio = update.get("audio") or {}
        for side, allowed in (("input", AUDIO_INPUT_KEYS), ("output", AUDIO_OUTPUT_KEYS)):
            for key, value in (audio.get(side) or {}).items():
                if key not in allowed:
                    param = f"session.audio.{side}.{key}"
                    raise _Error("unknown_parameter", f"Unknown parameter: '{param}'.", param)
                if key == "format":
                    fmt_type = (value or {}).get("type")
                    if fmt_type not in FORMATS or (
                        fmt_type == "audio/pcm" and value.get("rate", 24000) != 24000
                    ):
                        raise _Error(
                            "invalid_value",
                            f"Invalid audio format: {value!r}.",
                            f"session.audio.{side}.format",
                        )
        modalities = update.get("output_modalities")
        if modalities is not None and modalities not in (["audio"], ["text"]):
            raise _Error(
                "invalid_value",
                "output_modalities must be ['audio'] or ['text'].",
                "session.output_modalities",
            )
        session = copy.deepcopy(self.rec.session)
        for key, value in update.items():
            if key != "audio":
                session[key] = value
        for side in ("input", "output"):
            session["audio"][side].update(audio.get(side) or {})
        self.rec.session = session
        self._setup_vad()
        await self.send("session.updated", session=session)

    async def on_input_audio_buffer_append(self, m: dict[str, Any]) -> None:
        audio = m.get("audio")
        if not isinstance(audio, str):
            raise _Error(
                "missing_required_parameter", "Missing required parameter: 'audio'.", "audio"
            )
        try:
            data = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            raise _Error("invalid_value", "Invalid base64 in 'audio'.", "audio") from None
        fmt = self.rec.input_format
        self.rec.audio += data
        self.buffer += data
        pcm = g711.decode(data, fmt.encoding).tobytes() if fmt.is_g711 else data
        step = fmt.rate * 2 * 20 // 1000
        for i in range(0, len(pcm), step):
            chunk = pcm[i : i + step]
            self.appended_ms += len(chunk) / 2 * 1000 / fmt.rate
            if self.vad is not None:
                change = self.vad.process(chunk)
                if change is VadEvent.START:
                    await self._speech_started()
                elif change is VadEvent.STOP:
                    await self._speech_stopped()

    async def _speech_started(self) -> None:
        td = self.rec.session["audio"]["input"]["turn_detection"] or {}
        padding = int(td.get("prefix_padding_ms", 300))
        self.speech_start_ms = max(self.appended_ms - 60 - padding, self.buffer_start_ms)
        self.user_item = _id("item")
        await self.send(
            "input_audio_buffer.speech_started",
            audio_start_ms=int(self.speech_start_ms),
            item_id=self.user_item,
        )
        if td.get("interrupt_response", True) and self.response is not None:
            self.response.cancel()

    async def _speech_stopped(self) -> None:
        item = self.user_item or _id("item")
        await self.send(
            "input_audio_buffer.speech_stopped", audio_end_ms=int(self.appended_ms), item_id=item
        )
        fmt = self.rec.input_format
        skip = fmt.ms_to_bytes(int(self.speech_start_ms - self.buffer_start_ms))
        speech = bytes(self.buffer[skip:])
        await self._commit(item, speech)
        td = self.rec.session["audio"]["input"]["turn_detection"] or {}
        if td.get("create_response", True):
            self._start_response(speech_ms=fmt.bytes_to_ms(len(speech)), user_audio=speech)

    async def _commit(self, item_id: str, audio: bytes) -> None:
        previous, self.last_item = self.last_item, item_id
        self.buffer = bytearray()
        self.buffer_start_ms = int(self.appended_ms)
        await self.send("input_audio_buffer.committed", previous_item_id=previous, item_id=item_id)
        item = {
            "id": item_id,
            "type": "message",
            "status": "completed",
            "role": "user",
            "content": [{"type": "input_audio", "transcript": None}],
        }
        await self.send("conversation.item.added", previous_item_id=previous, item=item)
        await self.send("conversation.item.done", previous_item_id=previous, item=item)
        if self.rec.session["audio"]["input"]["transcription"]:
            ms = self.rec.input_format.bytes_to_ms(len(audio))
            text = f"(user audio, {ms} ms)"
            await self.send(
                "conversation.item.input_audio_transcription.delta",
                item_id=item_id,
                content_index=0,
                delta=text,
            )
            await self.send(
                "conversation.item.input_audio_transcription.completed",
                item_id=item_id,
                content_index=0,
                transcript=text,
                usage={
                    "type": "tokens",
                    "total_tokens": 10,
                    "input_tokens": 6,
                    "input_token_details": {"text_tokens": 0, "audio_tokens": 6},
                    "output_tokens": 4,
                },
            )

    async def on_input_audio_buffer_commit(self, m: dict[str, Any]) -> None:
        fmt = self.rec.input_format
        ms = fmt.bytes_to_ms(len(self.buffer))
        if ms < 100:
            raise _Error(
                "input_audio_buffer_commit_empty",
                "Error committing input audio buffer: buffer too small. Expected at least 100ms "
                f"of audio, but buffer only has {ms:.2f}ms of audio.",
            )
        await self._commit(_id("item"), bytes(self.buffer))

    async def on_input_audio_buffer_clear(self, m: dict[str, Any]) -> None:
        self.buffer = bytearray()
        self.buffer_start_ms = int(self.appended_ms)
        await self.send("input_audio_buffer.cleared")

    async def on_conversation_item_create(self, m: dict[str, Any]) -> None:
        item = m.get("item")
        if not isinstance(item, dict) or item.get("type") not in (
            "message",
            "function_call",
            "function_call_output",
        ):
            raise _Error("invalid_value", "Invalid 'item'.", "item")
        item = {"id": item.get("id") or _id("item"), "status": "completed", **item}
        previous, self.last_item = self.last_item, item["id"]
        await self.send("conversation.item.added", previous_item_id=previous, item=item)
        await self.send("conversation.item.done", previous_item_id=previous, item=item)

    async def on_conversation_item_truncate(self, m: dict[str, Any]) -> None:
        item_id = m.get("item_id")
        end_ms = m.get("audio_end_ms")
        if not isinstance(end_ms, int) or end_ms < 0:
            raise _Error(
                "invalid_value", "audio_end_ms must be a non-negative integer.", "audio_end_ms"
            )
        duration = self.rec.generated_ms.get(str(item_id))
        if duration is None:
            raise _Error(
                "item_truncate_invalid_item_id",
                f"Item with item_id '{item_id}' not found or is not an assistant audio item.",
                "item_id",
            )
        if end_ms > duration:
            raise _Error(
                "invalid_value",
                f"Audio content of {duration}ms is already shorter than {end_ms}ms",
                "audio_end_ms",
            )
        await self.send(
            "conversation.item.truncated",
            item_id=item_id,
            content_index=m.get("content_index", 0),
            audio_end_ms=end_ms,
        )

    async def on_response_create(self, m: dict[str, Any]) -> None:
        if self.response is not None:
            raise _Error(
                "conversation_already_has_active_response",
                f"Conversation already has an active response in progress: {self.response_id}. "
                "Wait until the response is finished before creating a new one.",
            )
        self._start_response(speech_ms=0, user_audio=None)

    async def on_response_cancel(self, m: dict[str, Any]) -> None:
        if self.response is None:
            raise _Error(
                "response_cancel_not_active", "Cancellation failed: no active response found"
            )
        self.response.cancel()

    # -- responses -----------------------------------------------------------------------------

    def _start_response(self, speech_ms: int, user_audio: bytes | None) -> None:
        self.response_id = _id("resp")
        self.response = asyncio.get_running_loop().create_task(
            self._respond(self.response_id, speech_ms, user_audio)
        )

    def _reply_audio(self, user_audio: bytes | None) -> bytes:
        out = self.rec.output_format
        if self.opt.reply == "echo" and user_audio:
            src = self.rec.input_format
            pcm = (
                g711.decode(user_audio, src.encoding)
                if src.is_g711
                else np.frombuffer(user_audio, dtype="<i2")
            )
            if src.rate != out.rate:
                pcm = Resampler(out.rate).resample_pcm(pcm.astype(np.int16), src.rate)
        else:
            n = int(self.opt.tone_seconds * out.rate)
            t = np.arange(n) / out.rate
            pcm = (np.sin(2 * np.pi * self.opt.tone_hz * t) * 0.3 * 32767).astype(np.int16)
        pcm = pcm.astype(np.int16)
        return g711.encode(pcm, out.encoding) if out.is_g711 else pcm.astype("<i2").tobytes()

    async def _respond(self, rid: str, speech_ms: int, user_audio: bytes | None) -> None:
        session = self.rec.session
        audio_mode = session["output_modalities"] == ["audio"] and self.opt.reply != "text"
        item_id = _id("item")
        out = self.rec.output_format
        fmt_obj = session["audio"]["output"]["format"]
        response = {
            "object": "realtime.response",
            "id": rid,
            "status": "in_progress",
            "status_details": None,
            "output": [],
            "conversation_id": "conv_emulated",
            "output_modalities": session["output_modalities"],
            "max_output_tokens": "inf",
            "audio": {"output": {"format": fmt_obj, "voice": session["audio"]["output"]["voice"]}},
            "usage": None,
            "metadata": None,
        }
        await self.send("response.created", response=response)
        item: dict[str, Any] = {
            "id": item_id,
            "type": "message",
            "status": "in_progress",
            "role": "assistant",
            "content": [],
        }
        await self.send("response.output_item.added", response_id=rid, output_index=0, item=item)
        await self.send("conversation.item.added", previous_item_id=self.last_item, item=item)
        self.last_item = item_id
        where = {"response_id": rid, "item_id": item_id, "output_index": 0, "content_index": 0}
        part = {"type": "audio", "transcript": ""} if audio_mode else {"type": "text", "text": ""}
        await self.send("response.content_part.added", **where, part=part)
        words = self.opt.reply_text.split()
        sent_words: list[str] = []
        audio = self._reply_audio(user_audio) if audio_mode else b""
        step = out.ms_to_bytes(self.opt.delta_ms)
        status, details = "completed", None
        try:
            if audio_mode:
                for i in range(0, len(audio), step):
                    if words:
                        sent_words.append(words.pop(0))
                        await self.send(
                            "response.output_audio_transcript.delta",
                            **where,
                            delta=(" " if len(sent_words) > 1 else "") + sent_words[-1],
                        )
                    chunk = audio[i : i + step]
                    self.rec.generated_ms[item_id] = out.bytes_to_ms(i + len(chunk))
                    if i == 0:
                        self._arm_barge_in()
                    await self.send(
                        "response.output_audio.delta",
                        **where,
                        delta=base64.b64encode(chunk).decode(),
                    )
                    await asyncio.sleep(
                        self.opt.delta_ms / 1000 / self.opt.speed if self.opt.speed > 0 else 0
                    )
            for word in words:
                sent_words.append(word)
                kind = (
                    "response.output_audio_transcript.delta"
                    if audio_mode
                    else "response.output_text.delta"
                )
                await self.send(kind, **where, delta=(" " if len(sent_words) > 1 else "") + word)
            words = []
        except asyncio.CancelledError:
            status, details = "cancelled", {"type": "cancelled", "reason": "turn_detected"}
        text = " ".join(sent_words)
        if audio_mode:
            await self.send("response.output_audio.done", **where)
            await self.send("response.output_audio_transcript.done", **where, transcript=text)
            part = {"type": "audio", "transcript": text}
            content = [{"type": "output_audio", "transcript": text}]
        else:
            await self.send("response.output_text.done", **where, text=text)
            part = {"type": "text", "text": text}
            content = [{"type": "output_text", "text": text}]
        await self.send("response.content_part.done", **where, part=part)
        item = {
            **item,
            "status": "completed" if status == "completed" else "incomplete",
            "content": content,
        }
        await self.send("response.output_item.done", response_id=rid, output_index=0, item=item)
        await self.send("conversation.item.done", previous_item_id=None, item=item)
        generated_ms = self.rec.generated_ms.get(item_id, 0)
        self.responses += 1
        cached = 64 if self.responses > 1 else 0
        audio_in = math.ceil(speech_ms / 100) + 4
        text_in = len(str(session.get("instructions") or "")) // 4 + 8
        audio_out = math.ceil(generated_ms / 50)
        text_out = len(sent_words)
        usage = {
            "total_tokens": audio_in + text_in + audio_out + text_out,
            "input_tokens": audio_in + text_in,
            "output_tokens": audio_out + text_out,
            "input_token_details": {
                "text_tokens": text_in,
                "audio_tokens": audio_in,
                "image_tokens": 0,
                "cached_tokens": min(cached, text_in),
                "cached_tokens_details": {
                    "text_tokens": min(cached, text_in),
                    "audio_tokens": 0,
                    "image_tokens": 0,
                },
            },
            "output_token_details": {"text_tokens": text_out, "audio_tokens": audio_out},
        }
        response = {
            **response,
            "status": status,
            "status_details": details,
            "output": [item],
            "usage": usage,
        }
        self.response, self.response_id = None, None
        await self.send("response.done", response=response)
        await self.send(
            "rate_limits.updated",
            rate_limits=[
                {"name": "tokens", "limit": 40000, "remaining": 38000, "reset_seconds": 2.0}
            ],
        )

    def _arm_barge_in(self) -> None:
        delay = self.emu.take_fault("barge_in_after_s")
        if delay is not None:
            self.timers.append(asyncio.get_running_loop().create_task(self._fake_barge_in(delay)))

    async def _fake_barge_in(self, delay: float) -> None:
        """As if the user spoke over the reply ``delay`` seconds after its first delta."""
        await asyncio.sleep(delay)
        await self._speech_started()
        await asyncio.sleep(0.3)
        item = self.user_item or _id("item")
        await self.send(
            "input_audio_buffer.speech_stopped", audio_end_ms=int(self.appended_ms), item_id=item
        )
        await self._commit(item, b"")

    # -- faults --------------------------------------------------------------------------------

    def arm_faults(self) -> None:
        loop = asyncio.get_running_loop()
        for name, action in (
            ("close_1011_after_s", self._close_1011),
            ("session_expired_after_s", self._expire),
            ("stall_after_s", self._stall),
        ):
            delay = self.emu.take_fault(name)
            if delay is not None:
                self.timers.append(loop.create_task(self._after(delay, action)))

    async def _after(self, delay: float, action: Any) -> None:
        await asyncio.sleep(delay)
        await action()

    async def _close_1011(self) -> None:
        await self.ws.close(1011, "internal server error")

    async def _expire(self) -> None:
        await self.error(
            "session_expired", "Your session hit the maximum duration of 60 minutes.", None, None
        )
        await self.ws.close(1000, "session expired")

    async def _stall(self) -> None:
        """Stop reading (so pings go unanswered) and stop sending."""
        self.ws.transport.pause_reading()
        self.emu.stalled.append(self.rec)

    async def shutdown(self) -> None:
        tasks = [*self.timers, *([self.response] if self.response else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _select_subprotocol(
    conn: ServerConnection, offered: Sequence[Subprotocol]
) -> Subprotocol | None:
    """Browsers authenticate with subprotocols; the server answers with ``realtime``."""
    return Subprotocol("realtime") if "realtime" in offered else None


class OpenAIEmulator:
    """A WebSocket server on 127.0.0.1 speaking OpenAI Realtime GA; see the module docstring."""

    def __init__(
        self, options: OpenAIEmulatorOptions | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.options = options or OpenAIEmulatorOptions()
        self.host, self.port = host, port
        self.sessions: list[EmulatedSession] = []
        self.stalled: list[EmulatedSession] = []
        self._fired: set[str] = set()
        self._server: Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}/v1/realtime"

    def take_fault(self, name: str) -> float | None:
        """The fault's delay the first time it is asked for, None afterwards."""
        value = getattr(self.options, name)
        if value is None or name in self._fired:
            return None
        self._fired.add(name)
        return float(value)

    async def start(self) -> None:
        self._server = await serve(
            self._handle,
            self.host,
            self.port,
            process_request=self._check_request,
            select_subprotocol=_select_subprotocol,
            max_size=None,
            close_timeout=1.0,
            logger=_ws_log,
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> OpenAIEmulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _api_key(self, request: Request) -> str:
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            return auth[len("Bearer ") :].strip()
        for proto in request.headers.get("Sec-WebSocket-Protocol", "").split(","):
            proto = proto.strip()
            if proto.startswith("openai-insecure-api-key."):
                return proto[len("openai-insecure-api-key.") :]
        return ""

    def _check_request(self, conn: ServerConnection, request: Request) -> Response | None:
        key = self._api_key(request)
        bad = not key or (self.options.api_keys and key not in self.options.api_keys)
        if bad or (self.options.invalid_key and "invalid_key" not in self._fired):
            if self.options.invalid_key:
                self._fired.add("invalid_key")
            shown = (key[:3] + "***" + key[-4:]) if len(key) > 8 else "***"
            body = json.dumps(
                {
                    "error": {
                        "type": "invalid_request_error",
                        "code": "invalid_api_key",
                        "message": f"Incorrect API key provided: {shown}.",
                        "param": None,
                    }
                }
            ).encode()
            headers = Headers({"Content-Type": "application/json"})
            return Response(HTTPStatus.UNAUTHORIZED, "Unauthorized", headers, body)
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        request = ws.request
        assert request is not None
        query = request.path.partition("?")[2]
        params = dict(p.partition("=")[::2] for p in query.split("&") if p)
        model = params.get("model", "gpt-realtime")
        headers = {k: v for k, v in request.headers.raw_items() if k.lower() != "authorization"}
        rec = EmulatedSession(model=model, headers=headers, session=default_session(model))
        self.sessions.append(rec)
        conn = _Connection(self, ws, rec)
        beta = request.headers.get("OpenAI-Beta") == "realtime=v1" or "openai-beta.realtime-v1" in (
            request.headers.get("Sec-WebSocket-Protocol") or ""
        )
        if beta and not self.options.accept_beta:
            await conn.error(
                "beta_api_shape_disabled",
                "The beta Realtime API shape has been disabled.",
                None,
                None,
            )
            await ws.close(4000, "beta_api_shape_disabled")
            rec.close_code = 4000
            return
        await conn.send("session.created", session=rec.session)
        conn.arm_faults()
        try:
            async for raw in ws:
                await conn.handle(raw)
        except Exception:
            pass
        finally:
            await conn.shutdown()
            rec.close_code = ws.close_code
