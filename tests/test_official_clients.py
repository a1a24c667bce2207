"""The official SDK clients run real sessions against our emulators: if the emulators spoke
a protocol of their own making, these clients would fail. (Test-only dependencies.)"""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
import trustme

from tests.peer import dominant_frequency, tone
from tests.sdk_types import check_openai_server_event


async def openai_events_until(conn: Any, kind: str, seen: list[Any]) -> Any:
    """Read events with the SDK until one of ``kind``; each is also judged strictly."""
    while True:
        event = await asyncio.wait_for(conn.recv(), 10)
        check_openai_server_event(event.model_dump(mode="json", exclude_unset=True))
        seen.append(event)
        if event.type == kind:
            return event


async def test_the_openai_sdk_runs_a_session_against_the_emulator(
    start_openai_emulator: Any,
) -> None:
    from openai import AsyncOpenAI

    emulator = await start_openai_emulator(reply="tone", tone_hz=660, tone_seconds=1.0, speed=2)
    client = AsyncOpenAI(
        api_key="sk-test-sdk", websocket_base_url=f"ws://127.0.0.1:{emulator.port}/v1"
    )
    seen: list[Any] = []
    async with client.realtime.connect(model="gpt-realtime-2.1") as conn:
        await openai_events_until(conn, "session.created", seen)
        await conn.session.update(
            session={
                "type": "realtime",
                "output_modalities": ["audio"],
                "audio": {
                    "input": {"turn_detection": {"type": "server_vad", "silence_duration_ms": 300}},
                    "output": {"voice": "marin"},
                },
            }
        )
        await openai_events_until(conn, "session.updated", seen)

        # A voice turn: 1 s of 440 Hz, then silence; the emulator answers with 660 Hz.
        speech = np.concatenate([tone(440, 1.0, 24000), np.zeros(12000, dtype=np.int16)])
        for i in range(0, speech.size, 2400):
            chunk = speech[i : i + 2400].astype("<i2").tobytes()
            await conn.input_audio_buffer.append(audio=base64.b64encode(chunk).decode())
        await openai_events_until(conn, "input_audio_buffer.speech_stopped", seen)
        done = await openai_events_until(conn, "response.done", seen)
        assert done.response.status == "completed" and done.response.usage.total_tokens > 0
        deltas = [e for e in seen if e.type == "response.output_audio.delta"]
        reply = np.frombuffer(b"".join(base64.b64decode(e.delta) for e in deltas), "<i2")
        assert abs(dominant_frequency(reply, 24000) - 660) < 10
        item_id = deltas[0].item_id

        # Truncate that reply where a listener would have stopped it.
        await conn.conversation.item.truncate(item_id=item_id, content_index=0, audio_end_ms=400)
        truncated = await openai_events_until(conn, "conversation.item.truncated", seen)
        assert (truncated.item_id, truncated.audio_end_ms) == (item_id, 400)
        await conn.conversation.item.retrieve(item_id=item_id)
        retrieved = await openai_events_until(conn, "conversation.item.retrieved", seen)
        assert retrieved.item.id == item_id

        # Cancel a response in flight.
        await conn.response.create()
        await openai_events_until(conn, "response.created", seen)
        await conn.response.cancel()
        cancelled = await openai_events_until(conn, "response.done", seen)
        assert cancelled.response.status == "cancelled"
    assert not [e for e in seen if e.type == "error"]


@pytest.fixture
async def gemini_over_tls() -> AsyncIterator[tuple[Any, ssl.SSLContext]]:
    """A Gemini emulator behind a throwaway loopback certificate (google-genai insists on
    ``wss://``), and a client context that trusts it."""
    from bridge.emulators.gemini import GeminiEmulator, GeminiEmulatorOptions

    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    options = GeminiEmulatorOptions(reply="tone", tone_hz=660, tone_seconds=0.6)
    emulator = GeminiEmulator(options, tls=server)
    await emulator.start()
    yield emulator, client
    await emulator.stop()
    from tests.support import judge_gemini

    judge_gemini(emulator, clients=True)  # what google-genai itself sent, too


async def gemini_turn(session: Any) -> list[Any]:
    messages = []
    async for message in session.receive():  # parsed by the SDK's own converters and types
        messages.append(message)
    return messages


async def test_google_genai_runs_and_resumes_a_session_against_the_emulator(
    gemini_over_tls: tuple[Any, ssl.SSLContext],
) -> None:
    from google import genai
    from google.genai import types

    emulator, trust = gemini_over_tls
    client = genai.Client(
        api_key="AIza-test-sdk",
        http_options=types.HttpOptions(
            base_url=f"https://127.0.0.1:{emulator.port}", async_client_args={"ssl": trust}
        ),
    )
    config = types.LiveConnectConfig(
        response_modalities=[types.Modality.AUDIO],
        input_audio_transcription=types.AudioTranscriptionConfig(),
        output_audio_transcription=types.AudioTranscriptionConfig(),
        session_resumption=types.SessionResumptionConfig(),
    )
    async with client.aio.live.connect(model="gemini-3.8-live", config=config) as session:
        speech = np.concatenate([tone(440, 1.0, 16000), np.zeros(16000, dtype=np.int16)])

        async def speak() -> None:
            for i in range(0, speech.size, 640):  # 40 ms chunks, sent as base64url by the SDK
                chunk = speech[i : i + 640].astype("<i2").tobytes()
                await session.send_realtime_input(
                    audio=types.Blob(data=chunk, mime_type="audio/pcm;rate=16000")
                )
                await asyncio.sleep(0.01)

        speaking = asyncio.ensure_future(speak())
        turn = await asyncio.wait_for(gemini_turn(session), 15)
        await speaking
        contents = [m.server_content for m in turn if m.server_content]
        audio = b"".join(
            part.inline_data.data
            for c in contents
            if c.model_turn
            for part in c.model_turn.parts or []
            if part.inline_data
        )
        assert abs(dominant_frequency(np.frombuffer(audio, "<i2"), 24000) - 660) < 10
        assert any(c.input_transcription for c in contents)
        assert "".join(
            c.output_transcription.text or "" for c in contents if c.output_transcription
        )
        assert any(m.voice_activity for m in turn)  # 3.8 Live reports the user's speech
        assert turn[-1].usage_metadata is not None and turn[-1].usage_metadata.prompt_token_count
        handle = None
        async with asyncio.timeout(5):
            while handle is None:
                message = await session._receive()
                update = message.session_resumption_update
                if update and update.resumable and update.new_handle:
                    handle = update.new_handle
    resumed = config.model_copy(
        update={"session_resumption": types.SessionResumptionConfig(handle=handle)}
    )
    async with client.aio.live.connect(model="gemini-3.8-live", config=resumed) as session:
        await session.send_client_content(
            turns=types.Content(role="user", parts=[types.Part(text="Still there?")])
        )
        turn = await asyncio.wait_for(gemini_turn(session), 15)
        assert turn[-1].server_content is not None and turn[-1].server_content.turn_complete
    first, second = emulator.sessions
    assert second.resumed_from is not None and second.resumed_from[0] is first
    # The SDK sends audio as base64url; the emulator decoded all of it.
    assert len(first.heard()) >= speech.size * 2 * 0.95
