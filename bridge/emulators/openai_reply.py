"""How the OpenAI emulator answers: reply audio and the response event stream."""

from __future__ import annotations

import asyncio
import base64
import math
from typing import Any, Protocol

import numpy as np

from bridge.audio import g711
from bridge.audio.resample import Resampler
from bridge.emulators.openai_session import EmulatedSession, OpenAIEmulatorOptions, new_id


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

    async def send(self, kind: str, **fields: Any) -> None: ...

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
    item_id = new_id("item")
    out = conn.rec.output_format
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
    await conn.send("response.created", response=response)
    item: dict[str, Any] = {
        "id": item_id,
        "type": "message",
        "status": "in_progress",
        "role": "assistant",
        "content": [],
    }
    await conn.send("response.output_item.added", response_id=rid, output_index=0, item=item)
    await conn.send("conversation.item.added", previous_item_id=conn.last_item, item=item)
    conn.last_item = item_id
    where = {"response_id": rid, "item_id": item_id, "output_index": 0, "content_index": 0}
    part = {"type": "audio", "transcript": ""} if audio_mode else {"type": "text", "text": ""}
    await conn.send("response.content_part.added", **where, part=part)
    words = conn.opt.reply_text.split()
    sent_words: list[str] = []
    audio = reply_audio(conn, user_audio) if audio_mode else b""
    step = out.ms_to_bytes(conn.opt.delta_ms)
    status, details = "completed", None
    try:
        if audio_mode:
            for i in range(0, len(audio), step):
                if words:
                    sent_words.append(words.pop(0))
                    await conn.send(
                        "response.output_audio_transcript.delta",
                        **where,
                        delta=(" " if len(sent_words) > 1 else "") + sent_words[-1],
                    )
                chunk = audio[i : i + step]
                conn.rec.generated_ms[item_id] = out.bytes_to_ms(i + len(chunk))
                conn.audio_produced = True
                if i == 0:
                    conn.arm_barge_in()
                await conn.send(
                    "response.output_audio.delta",
                    **where,
                    delta=base64.b64encode(chunk).decode(),
                )
                await asyncio.sleep(
                    conn.opt.delta_ms / 1000 / conn.opt.speed if conn.opt.speed > 0 else 0
                )
        for word in words:
            sent_words.append(word)
            kind = (
                "response.output_audio_transcript.delta"
                if audio_mode
                else "response.output_text.delta"
            )
            await conn.send(kind, **where, delta=(" " if len(sent_words) > 1 else "") + word)
        words = []
    except asyncio.CancelledError:
        status, details = "cancelled", {"type": "cancelled", "reason": "turn_detected"}
    text = " ".join(sent_words)
    if audio_mode:
        await conn.send("response.output_audio.done", **where)
        await conn.send("response.output_audio_transcript.done", **where, transcript=text)
        part = {"type": "audio", "transcript": text}
        content = [{"type": "output_audio", "transcript": text}]
    else:
        await conn.send("response.output_text.done", **where, text=text)
        part = {"type": "text", "text": text}
        content = [{"type": "output_text", "text": text}]
    await conn.send("response.content_part.done", **where, part=part)
    item = {
        **item,
        "status": "completed" if status == "completed" else "incomplete",
        "content": content,
    }
    generated = audio[: out.ms_to_bytes(conn.rec.generated_ms.get(item_id, 0))]
    conn.items[item_id] = {**item, "audio": generated if audio_mode else None}
    await conn.send("response.output_item.done", response_id=rid, output_index=0, item=item)
    await conn.send("conversation.item.done", previous_item_id=None, item=item)
    generated_ms = conn.rec.generated_ms.get(item_id, 0)
    conn.responses += 1
    cached = 64 if conn.responses > 1 else 0
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
    conn.response, conn.response_id = None, None
    await conn.send("response.done", response=response)
    await conn.send(
        "rate_limits.updated",
        rate_limits=[{"name": "tokens", "limit": 40000, "remaining": 38000, "reset_seconds": 2.0}],
    )
