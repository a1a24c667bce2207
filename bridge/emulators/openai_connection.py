"""One emulated OpenAI Realtime session: client events in, server events out."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import Callable
from typing import Any

from websockets.asyncio.server import ServerConnection

from bridge.audio import g711
from bridge.audio.vad import EnergyVad, VadEvent
from bridge.emulators.openai_reply import stream_response
from bridge.emulators.openai_session import EmulatedSession, OpenAIEmulatorOptions
from bridge.protocols.openai_server import (
    ProtocolError,
    ServerEvents,
    check_commit,
    check_item,
    check_truncate,
    committed_events,
    decode_append,
    event_id_of,
    merged_session,
    new_id,
    parse_client_event,
)


class Connection:
    """The protocol state of one emulated session."""

    def __init__(
        self,
        options: OpenAIEmulatorOptions,
        take_fault: Callable[[str], Any],
        stalled: list[EmulatedSession],
        ws: ServerConnection,
        rec: EmulatedSession,
    ):
        self.opt, self.ws, self.rec = options, ws, rec
        self._take_fault, self._stalled = take_fault, stalled
        self.events = ServerEvents()
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
        self.audio_produced = False  # the voice is fixed from now on
        self.items: dict[str, dict[str, Any]] = {}  # the conversation, with audio bytes
        self._setup_vad()

    # -- plumbing ------------------------------------------------------------------------------

    async def send(self, kind: str, **fields: Any) -> None:
        await self.send_event(self.events.event(kind, **fields))

    async def send_event(self, event: dict[str, Any]) -> None:
        self.rec.wire.append(("out", event))
        if event["type"] == "error":
            self.rec.errors.append(event["error"])
        with contextlib.suppress(Exception):
            await self.ws.send(json.dumps(event))

    async def error(self, code: str, message: str, param: str | None, event_id: Any) -> None:
        await self.send_event(self.events.error(code, message, param, event_id))

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
        except (ValueError, RecursionError):
            message = raw
        self.rec.wire.append(("in", message))
        if isinstance(message, dict) and message.get("type") != "input_audio_buffer.append":
            self.rec.received.append(message)
        event_id = event_id_of(message)
        try:
            message = parse_client_event(raw)
            kind = message["type"]
            handler = getattr(self, "on_" + kind.replace(".", "_"), None)
            if handler is not None:
                await handler(message)
        except ProtocolError as exc:
            exc.event_id = exc.event_id or event_id
            await self.send_event(self.events.from_error(exc))
        except (TypeError, ValueError, KeyError, AttributeError, IndexError, RecursionError):
            # A field of the wrong type somewhere: the server answers, the session goes on.
            await self.error(
                "invalid_type", "Invalid type for a field of the event.", None, event_id
            )

    async def on_session_update(self, m: dict[str, Any]) -> None:
        self.rec.session = merged_session(
            self.rec.session, m.get("session"), audio_produced=self.audio_produced
        )
        self._setup_vad()
        await self.send("session.updated", session=self.rec.session)

    async def on_input_audio_buffer_append(self, m: dict[str, Any]) -> None:
        data = decode_append(m)
        fmt = self.rec.input_format
        if self.opt.reply == "loopback":  # an instant echo, for latency benchmarks
            await self.send(
                "response.output_audio.delta",
                response_id="resp_loopback",
                item_id="item_loopback",
                output_index=0,
                content_index=0,
                delta=m["audio"],
            )
            return
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
        self.user_item = new_id("item")
        await self.send(
            "input_audio_buffer.speech_started",
            audio_start_ms=int(self.speech_start_ms),
            item_id=self.user_item,
        )
        if td.get("interrupt_response", True) and self.response is not None:
            self.response.cancel()

    async def _speech_stopped(self) -> None:
        item = self.user_item or new_id("item")
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
        events = committed_events(self.events, item_id, previous)
        self.items[item_id] = {**events[-1]["item"], "audio": audio}
        for event in events:
            await self.send_event(event)
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
        check_commit(fmt.bytes_to_ms(len(self.buffer)))
        await self._commit(new_id("item"), bytes(self.buffer))

    async def on_input_audio_buffer_clear(self, m: dict[str, Any]) -> None:
        self.buffer = bytearray()
        self.buffer_start_ms = int(self.appended_ms)
        await self.send("input_audio_buffer.cleared")

    async def on_conversation_item_create(self, m: dict[str, Any]) -> None:
        item = check_item(m)
        item = {"id": item.get("id") or new_id("item"), "status": "completed", **item}
        self.items[item["id"]] = item
        previous, self.last_item = self.last_item, item["id"]
        await self.send("conversation.item.added", previous_item_id=previous, item=item)
        await self.send("conversation.item.done", previous_item_id=previous, item=item)

    async def on_conversation_item_retrieve(self, m: dict[str, Any]) -> None:
        item = self._item(m, "item_retrieve_invalid_item_id")
        shown = {k: v for k, v in item.items() if k != "audio"}
        audio = item.get("audio")
        if audio is not None and shown.get("content"):
            part = dict(shown["content"][0])
            part["audio"] = base64.b64encode(audio).decode()
            shown["content"] = [part, *shown["content"][1:]]
        await self.send("conversation.item.retrieved", item=shown)

    async def on_conversation_item_delete(self, m: dict[str, Any]) -> None:
        item = self._item(m, "item_delete_invalid_item_id")
        del self.items[item["id"]]
        await self.send("conversation.item.deleted", item_id=item["id"])

    def _item(self, m: dict[str, Any], code: str) -> dict[str, Any]:
        item_id = m.get("item_id")
        if not isinstance(item_id, str):
            raise ProtocolError(
                "missing_required_parameter", "Missing required parameter: 'item_id'.", "item_id"
            )
        if item_id not in self.items:
            raise ProtocolError(code, f"Item with item_id '{item_id}' not found.", "item_id")
        return self.items[item_id]

    async def on_conversation_item_truncate(self, m: dict[str, Any]) -> None:
        item_id, end_ms = check_truncate(m, self.rec.generated_ms)
        await self.send(
            "conversation.item.truncated",
            item_id=item_id,
            content_index=m.get("content_index", 0),
            audio_end_ms=end_ms,
        )

    async def on_response_create(self, m: dict[str, Any]) -> None:
        if self.response is not None:
            raise ProtocolError(
                "conversation_already_has_active_response",
                f"Conversation already has an active response in progress: {self.response_id}. "
                "Wait until the response is finished before creating a new one.",
            )
        self._start_response(speech_ms=0, user_audio=None)

    async def on_response_cancel(self, m: dict[str, Any]) -> None:
        if self.response is None:
            raise ProtocolError(
                "response_cancel_not_active", "Cancellation failed: no active response found"
            )
        self.response.cancel()

    # -- responses -----------------------------------------------------------------------------

    def _start_response(self, speech_ms: int, user_audio: bytes | None) -> None:
        self.response_id = new_id("resp")
        self.response = asyncio.get_running_loop().create_task(
            stream_response(self, self.response_id, speech_ms, user_audio)
        )

    def arm_barge_in(self) -> None:
        delay = self._take_fault("barge_in_after_s")
        if delay is not None:
            self.timers.append(asyncio.get_running_loop().create_task(self._fake_barge_in(delay)))

    async def _fake_barge_in(self, delay: float) -> None:
        """As if the user spoke over the reply ``delay`` seconds after its first delta."""
        await asyncio.sleep(delay)
        await self._speech_started()
        await asyncio.sleep(0.3)
        item = self.user_item or new_id("item")
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
            delay = self._take_fault(name)
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
        self._stalled.append(self.rec)

    async def shutdown(self) -> None:
        tasks = [*self.timers, *([self.response] if self.response else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
