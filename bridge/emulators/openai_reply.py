"""How the OpenAI emulator answers: reply audio and the response event stream."""

from __future__ import annotations

import asyncio
import math
from typing import Any, Protocol

import numpy as np

from bridge.audio import g711
from bridge.audio.resample import Resampler
from bridge.emulators.openai_session import EmulatedSession, OpenAIEmulatorOptions
from bridge.protocols.openai_server import ResponseStream, ServerEvents


class Connection(Protocol):
    """What a reply needs of its connection (:class:`~.openai_connection.Connection`)."""

    rec: EmulatedSession
    opt: OpenAIEmulatorOptions
    items: dict[str, dict[str, Any]]
    last_item: str | None
    audio_produced: bool
    responses: int
    response: asyncio.Task[None] | None
    response_id: str | None
    events: ServerEvents

    async def send(self, kind: str, **fields: Any) -> None: ...

    async def send_event(self, event: dict[str, Any]) -> None: ...

    def arm_barge_in(self) -> None: ...


def reply_audio(conn: Connection, user_audio: bytes | None) -> bytes:
    """The reply in the session's output format: the user's own audio, or a tone."""
    out = conn.rec.output_format
    if conn.opt.reply == "echo" and user_audio:
        src = conn.rec.input_format
        pcm = (
            g711.decode(user_audio, src.encoding)
            if src.is_g711
            else np.frombuffer(user_audio, dtype="<i2")
        )
        if src.rate != out.rate:
            pcm = Resampler(out.rate).resample_pcm(pcm.astype(np.int16), src.rate)
    else:
        n = int(conn.opt.tone_seconds * out.rate)
        t = np.arange(n) / out.rate
        pcm = (np.sin(2 * np.pi * conn.opt.tone_hz * t) * 0.3 * 32767).astype(np.int16)
    pcm = pcm.astype(np.int16)
    return g711.encode(pcm, out.encoding) if out.is_g711 else pcm.astype("<i2").tobytes()


async def stream_response(
    conn: Connection, rid: str, speech_ms: int, user_audio: bytes | None
) -> None:
    """Stream one response in the documented GA order; cancellation ends it as cut."""
    session = conn.rec.session
    audio_mode = session["output_modalities"] == ["audio"] and conn.opt.reply != "text"
    stream = ResponseStream(
        conn.events, session, audio=audio_mode, previous_item_id=conn.last_item, response_id=rid
    )
    item_id = stream.item_id
    conn.last_item = item_id
    out = conn.rec.output_format
    for event in stream.start():
        await conn.send_event(event)
    words = conn.opt.reply_text.split()
    sent_words: list[str] = []
    audio = reply_audio(conn, user_audio) if audio_mode else b""
    step = out.ms_to_bytes(conn.opt.delta_ms)
    status, reason = "completed", None
    try:
        if audio_mode:
            for i in range(0, len(audio), step):
                if words:
                    sent_words.append(words.pop(0))
                    delta = (" " if len(sent_words) > 1 else "") + sent_words[-1]
                    await conn.send_event(stream.text_delta(delta))
                chunk = audio[i : i + step]
                conn.rec.generated_ms[item_id] = out.bytes_to_ms(i + len(chunk))
                conn.audio_produced = True
                if i == 0:
                    conn.arm_barge_in()
                await conn.send_event(stream.audio_delta(chunk))
                await asyncio.sleep(
                    conn.opt.delta_ms / 1000 / conn.opt.speed if conn.opt.speed > 0 else 0
                )
        for word in words:
            sent_words.append(word)
            await conn.send_event(stream.text_delta((" " if len(sent_words) > 1 else "") + word))
        words = []
    except asyncio.CancelledError:
        status, reason = "cancelled", "turn_detected"
    generated_ms = conn.rec.generated_ms.get(item_id, 0)
    conn.responses += 1
    usage = _usage(conn, speech_ms, generated_ms, len(sent_words))
    closing = stream.finish(status, usage, reason)
    generated = audio[: out.ms_to_bytes(generated_ms)]
    conn.items[item_id] = {**stream.item, "audio": generated if audio_mode else None}
    for event in closing[:-1]:
        await conn.send_event(event)
    conn.response, conn.response_id = None, None
    await conn.send_event(closing[-1])
    await conn.send(
        "rate_limits.updated",
        rate_limits=[{"name": "tokens", "limit": 40000, "remaining": 38000, "reset_seconds": 2.0}],
    )


def _usage(conn: Connection, speech_ms: int, generated_ms: int, words: int) -> dict[str, Any]:
    """Token counts shaped like the GA server's, roughly proportional to what was said."""
    cached = 64 if conn.responses > 1 else 0
    audio_in = math.ceil(speech_ms / 100) + 4
    text_in = len(str(conn.rec.session.get("instructions") or "")) // 4 + 8
    audio_out = math.ceil(generated_ms / 50)
    text_out = words
    return {
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
