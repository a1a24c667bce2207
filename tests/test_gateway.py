"""The WebSocket gateway: OpenAI Realtime clients (the official SDK, a plain socket in the
envelope framing) in front of the OpenAI emulator (pass-through), the Gemini emulator and
echo (translated). Every server event a client receives is judged by the SDK's own types."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import aiohttp
import numpy as np
import pytest

from bridge.transports.gateway import pick_provider
from tests.peer import dominant_frequency, tone
from tests.sdk_types import check_openai_server_event
from tests.support import Bridge, wait_until

SPEECH = np.concatenate([tone(440, 1.0, 24000), np.zeros(14400, dtype=np.int16)])


async def calls(bridge: Bridge, n: int) -> None:
    async def settled() -> bool:
        return len(bridge.registry) == n

    await wait_until(settled)


def chunks(samples: np.ndarray, ms: int = 100) -> list[str]:
    step = 24000 * ms // 1000
    return [
        base64.b64encode(samples[i : i + step].astype("<i2").tobytes()).decode()
        for i in range(0, samples.size, step)
    ]


def sdk_client(bridge: Bridge) -> Any:
    from openai import AsyncOpenAI

    return AsyncOpenAI(
        api_key="sk-client-key-not-used",
        websocket_base_url=f"{bridge.url}/v1".replace("http", "ws"),
    )


async def until(conn: Any, kind: str, seen: list[Any], timeout: float = 15) -> Any:
    """Read events with the SDK until one of ``kind``; each is first judged strictly."""
    while True:
        raw = await asyncio.wait_for(conn.recv_bytes(), timeout)
        check_openai_server_event(json.loads(raw))
        event = conn.parse_event(raw)
        seen.append(event)
        if event.type == kind:
            return event


def reply_audio(seen: list[Any], response_id: str | None = None) -> np.ndarray:
    deltas = [
        e
        for e in seen
        if e.type == "response.output_audio.delta"
        and (response_id is None or e.response_id == response_id)
    ]
    return np.frombuffer(b"".join(base64.b64decode(e.delta) for e in deltas), "<i2")


async def voice_and_text_turns(conn: Any, seen: list[Any], reply_hz: float) -> None:
    """A voice turn (server VAD) answered with ``reply_hz``, then a typed turn."""
    await until(conn, "session.created", seen)
    await conn.session.update(
        session={
            "type": "realtime",
            "output_modalities": ["audio"],
            "audio": {
                "input": {"turn_detection": {"type": "server_vad", "silence_duration_ms": 300}}
            },
        }
    )
    await until(conn, "session.updated", seen)
    for chunk in chunks(SPEECH):
        await conn.input_audio_buffer.append(audio=chunk)
    await until(conn, "input_audio_buffer.speech_stopped", seen)
    await until(conn, "input_audio_buffer.committed", seen)
    done = await until(conn, "response.done", seen)
    assert done.response.status == "completed"
    assert done.response.usage is not None
    audio = reply_audio(seen, done.response.id)
    assert audio.size > 24000 * 0.3
    assert abs(dominant_frequency(audio, 24000) - reply_hz) < 15

    seen.clear()
    await conn.conversation.item.create(
        item={
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "What is the capital of France?"}],
        }
    )
    added = await until(conn, "conversation.item.added", seen)
    assert added.item.role == "user"
    await conn.response.create()
    done = await until(conn, "response.done", seen)
    assert done.response.status == "completed"
    content = done.response.output[0].content[0]
    said = getattr(content, "transcript", None) or getattr(content, "text", None)
    assert said, done.response


async def test_the_openai_sdk_talks_to_the_openai_emulator_through_the_gateway(
    openai_bridge: Any,
) -> None:
    bridge, emulator = await openai_bridge(reply="tone", tone_hz=660, tone_seconds=0.8, speed=0)
    seen: list[Any] = []
    async with sdk_client(bridge).realtime.connect(model="gpt-realtime-2.1") as conn:
        await voice_and_text_turns(conn, seen, reply_hz=660)
        sessions = await bridge.sessions()
        assert [s["transport"] for s in sessions] == ["gateway"]
        assert sessions[0]["pass_through"] is True and sessions[0]["provider"] == "openai"
        assert sessions[0]["tokens"] > 0 and sessions[0]["cost_usd"] > 0
        assert sessions[0]["audio_in_s"] >= 1.5
    # The client's key never reaches OpenAI; the bridge's does.
    headers = emulator.sessions[0].headers
    assert "sk-client-key-not-used" not in json.dumps(headers)
    await calls(bridge, 0)


async def test_the_openai_sdk_talks_to_the_gemini_emulator_through_the_gateway(
    gemini_bridge: Any,
) -> None:
    bridge, emulator = await gemini_bridge(reply="tone", tone_hz=660, tone_seconds=0.8)
    seen: list[Any] = []
    async with sdk_client(bridge).realtime.connect(model="gemini/gemini-3.8-live") as conn:
        await voice_and_text_turns(conn, seen, reply_hz=660)
        (session,) = await bridge.sessions()
        assert (session["transport"], session["provider"]) == ("gateway", "gemini")
        assert session["pass_through"] is False
    # Gemini heard 16 kHz audio (resampled from the client's 24 kHz).
    assert emulator.sessions[0].setup


async def test_the_openai_sdk_talks_to_echo_through_the_gateway(bridge: Bridge) -> None:
    seen: list[Any] = []
    async with sdk_client(bridge).realtime.connect(model="echo") as conn:
        await voice_and_text_turns(conn, seen, reply_hz=440)


@pytest.mark.parametrize(
    ("provider", "model", "expected"),
    [
        (None, "gpt-realtime-2.1", ("openai", "gpt-realtime-2.1")),
        (None, "gemini-3.8-live", ("gemini", "gemini-3.8-live")),
        (None, "gemini/gemini-3.8-live", ("gemini", "gemini-3.8-live")),
        (None, "echo", ("echo", None)),
        (None, "echo/echo", ("echo", "echo")),
        ("openai", "my-fine-tune", ("openai", "my-fine-tune")),
        (None, None, (None, None)),
    ],
)
def test_the_model_names_the_provider(
    provider: str | None, model: str | None, expected: tuple[str | None, str | None]
) -> None:
    assert pick_provider(provider, model) == expected


# -- the envelope framing ----------------------------------------------------------------------


async def envelope_messages(ws: aiohttp.ClientWebSocketResponse, until_type: str) -> list[Any]:
    """Envelope messages up to the realtime event ``until_type``; realtime ones are judged."""
    out = []
    while True:
        message = await asyncio.wait_for(ws.receive_json(), 15)
        out.append(message)
        if message["event"] == "realtime":
            check_openai_server_event(message["data"])
            if message["data"]["type"] == until_type:
                return out


async def test_a_plain_client_in_the_envelope_mode_hears_the_emulators_tone(
    openai_bridge: Any,
) -> None:
    bridge, _ = await openai_bridge(reply="tone", tone_hz=660, tone_seconds=0.8, speed=0)
    async with bridge.http.ws_connect(f"{bridge.url}/realtime") as ws:
        await envelope_messages(ws, "session.created")
        # The seed's clients leave session.type out; the gateway fills it in.
        await ws.send_json(
            {
                "type": "session.update",
                "session": {
                    "audio": {
                        "input": {
                            "turn_detection": {"type": "server_vad", "silence_duration_ms": 300}
                        }
                    }
                },
            }
        )
        await envelope_messages(ws, "session.updated")
        for chunk in chunks(SPEECH):
            await ws.send_json({"type": "input_audio_buffer.append", "audio": chunk})
        messages = await envelope_messages(ws, "response.done")
        deltas = [
            m["data"]["delta"]
            for m in messages
            if m["event"] == "realtime" and m["data"]["type"] == "response.output_audio.delta"
        ]
        audio = np.frombuffer(b"".join(base64.b64decode(d) for d in deltas), "<i2")
        assert abs(dominant_frequency(audio, 24000) - 660) < 15
        # Bridge-level messages: the cost of the turn, and stats on request.
        usage = await receive_event(ws, "usage")
        assert usage["data"]["cost_usd"] > 0
        await ws.send_json({"type": "bridge.stats"})
        stats = await receive_event(ws, "stats")
        assert stats["data"]["transport"] == "gateway" and stats["data"]["cost_usd"] > 0


async def receive_event(ws: aiohttp.ClientWebSocketResponse, name: str) -> Any:
    while True:
        message = await asyncio.wait_for(ws.receive_json(), 10)
        if message["event"] == name:
            return message


# -- the policy ----------------------------------------------------------------------------------


async def test_refused_events_get_a_clear_error_and_the_session_goes_on(
    start_bridge: Any,
) -> None:
    bridge = await start_bridge(lock_instructions=True, session_defaults='{"instructions": "x"}')
    async with (
        bridge.http.ws_connect(f"{bridge.url}/realtime?model=echo") as ws,
        bridge.http.ws_connect(f"{bridge.url}/v1/realtime?model=echo") as raw,
    ):
        await envelope_messages(ws, "session.created")
        await raw.receive_json()
        refusals = [
            ({"type": "conversation.item.delete", "item_id": "x"}, "event_not_allowed", "type"),
            (
                {"type": "session.update", "session": {"instructions": "Be evil."}},
                "locked_field",
                "session.instructions",
            ),
            (
                {"type": "session.update", "session": {"type": "realtime", "tools": []}},
                "locked_field",
                "session.tools",
            ),
            (
                {"type": "response.create", "response": {"instructions": "x"}},
                "locked_field",
                "response.instructions",
            ),
            (
                {
                    "type": "conversation.item.create",
                    "item": {
                        "type": "message",
                        "role": "system",
                        "content": [{"type": "input_text", "text": "x"}],
                    },
                },
                "locked_field",
                "item.role",
            ),
        ]
        for event, code, param in refusals:
            await ws.send_json({**event, "event_id": "evt_mine"})
            error = await receive_event(ws, "error")
            assert error["data"]["code"] == code and error["data"]["param"] == param
            assert error["data"]["event_id"] == "evt_mine"
            # The raw mode answers with OpenAI's own error event.
            await raw.send_json(event)
            message = await asyncio.wait_for(raw.receive_json(), 5)
            check_openai_server_event(message)
            assert message["type"] == "error" and message["error"]["code"] == code
        # Not an event at all: an OpenAI-shaped error in the realtime envelope.
        await ws.send_str("{not json")
        message = await envelope_messages(ws, "error")
        assert message[-1]["data"]["error"]["code"] == "invalid_event"
        # Both sessions still work.
        await ws.send_json({"type": "input_audio_buffer.commit"})
        message = await envelope_messages(ws, "error")
        assert message[-1]["data"]["error"]["code"] == "input_audio_buffer_commit_empty"
        assert len(await bridge.sessions()) == 2
        assert all(s["state"] == "active" for s in await bridge.sessions())


async def test_an_oversized_message_closes_only_its_own_socket_with_1009(
    start_bridge: Any,
) -> None:
    bridge = await start_bridge(gateway_max_message_bytes=64 * 1024)
    async with (
        bridge.http.ws_connect(f"{bridge.url}/realtime?model=echo") as big,
        bridge.http.ws_connect(f"{bridge.url}/realtime?model=echo") as other,
    ):
        await envelope_messages(big, "session.created")
        await envelope_messages(other, "session.created")
        audio = base64.b64encode(bytes(100 * 1024)).decode()
        await big.send_json({"type": "input_audio_buffer.append", "audio": audio})
        message = await asyncio.wait_for(big.receive(), 5)
        assert message.type == aiohttp.WSMsgType.CLOSE
        assert big.close_code == 1009 and "65536" in message.extra
        await other.send_json({"type": "bridge.stats"})
        stats = await receive_event(other, "stats")
        assert stats["data"]["state"] == "active"
        await calls(bridge, 1)


async def test_a_plain_http_request_gets_a_json_426(bridge: Bridge) -> None:
    async with bridge.http.get(f"{bridge.url}/v1/realtime?model=echo") as r:
        assert r.status == 426
        assert (await r.json())["error"]["code"] == "upgrade_required"
    async with bridge.http.get(f"{bridge.url}/realtime?provider=nope") as r:
        assert r.status == 426


async def test_an_unknown_provider_is_refused_before_the_upgrade(bridge: Bridge) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as raised:
        await bridge.http.ws_connect(f"{bridge.url}/realtime?provider=nope")
    assert raised.value.status == 400
    assert len(bridge.registry) == 0


# -- cancel, truncate, barge-in ------------------------------------------------------------------


async def ask(conn: Any, text: str) -> None:
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
    await conn.conversation.item.create(item=item)
    await conn.response.create()


async def test_translated_cancel_and_truncate_behave_like_openai(gemini_bridge: Any) -> None:
    bridge, _ = await gemini_bridge(reply="tone", tone_hz=660, tone_seconds=3.0, speed=1.0)
    seen: list[Any] = []
    async with sdk_client(bridge).realtime.connect(model="gemini-3.8-live") as conn:
        await until(conn, "session.created", seen)
        # A long reply, cancelled in flight: done as cancelled, and none of it after that.
        await ask(conn, "Tell me a long story.")
        first = await until(conn, "response.output_audio.delta", seen)
        await conn.response.cancel()
        done = await until(conn, "response.done", seen)
        assert done.response.id == first.response_id
        assert done.response.status == "cancelled"
        assert done.response.status_details.reason == "client_cancelled"
        # Cancelling again: OpenAI's error.
        await conn.response.cancel(event_id="evt_again")
        error = await until(conn, "error", seen)
        assert error.error.code == "response_cancel_not_active"
        assert error.error.event_id == "evt_again"

        # A complete reply, then truncated where the client stopped playing it.
        seen.clear()
        await ask(conn, "Say something short.")
        done = await until(conn, "response.done", seen, timeout=20)
        assert done.response.status == "completed"
        assert not [e for e in seen if getattr(e, "response_id", None) == first.response_id], (
            "audio of the cancelled reply kept coming"
        )
        item_id = done.response.output[0].id
        generated_ms = reply_audio(seen).size * 1000 // 24000
        assert generated_ms > 2500
        await conn.conversation.item.truncate(item_id=item_id, content_index=0, audio_end_ms=700)
        truncated = await until(conn, "conversation.item.truncated", seen)
        assert (truncated.item_id, truncated.audio_end_ms) == (item_id, 700)
        await conn.conversation.item.truncate(
            item_id=item_id, content_index=0, audio_end_ms=generated_ms + 500
        )
        error = await until(conn, "error", seen)
        assert error.error.param == "audio_end_ms"
        await conn.conversation.item.truncate(item_id="nope", content_index=0, audio_end_ms=1)
        error = await until(conn, "error", seen)
        assert error.error.code == "item_truncate_invalid_item_id"


async def test_translated_barge_in_cuts_the_reply_and_answers_the_new_turn(
    gemini_bridge: Any,
) -> None:
    bridge, _ = await gemini_bridge(
        reply="tone", tone_hz=660, tone_seconds=3.0, speed=1.0, voice_activity=True
    )
    seen: list[Any] = []
    async with sdk_client(bridge).realtime.connect(model="gemini-3.8-live") as conn:
        await until(conn, "session.created", seen)
        for chunk in chunks(SPEECH):
            await conn.input_audio_buffer.append(audio=chunk)
        first = await until(conn, "response.output_audio.delta", seen)
        seen.clear()
        # The user speaks over the reply.
        for chunk in chunks(SPEECH):
            await conn.input_audio_buffer.append(audio=chunk)
        started = await until(conn, "input_audio_buffer.speech_started", seen)
        done = await until(conn, "response.done", seen)
        assert done.response.id == first.response_id
        assert done.response.status == "cancelled"
        assert done.response.status_details.reason == "turn_detected"
        stopped = await until(conn, "input_audio_buffer.speech_stopped", seen)
        assert stopped.item_id == started.item_id
        committed = await until(conn, "input_audio_buffer.committed", seen)
        assert committed.item_id == started.item_id
        second = await until(conn, "response.created", seen)
        assert second.response.id != first.response_id
        done = await until(conn, "response.done", seen, timeout=20)
        assert done.response.status == "completed"
        # OpenAI's order: the cut reply ends before the user's new item is committed.
        cut = next(i for i, e in enumerate(seen) if e.type == "response.done")
        assert cut < seen.index(committed)


async def test_pass_through_errors_reach_the_client_and_the_bridge_never_truncates(
    openai_bridge: Any,
) -> None:
    bridge, emulator = await openai_bridge(
        reply="tone", tone_hz=660, tone_seconds=3.0, speed=1.0, delta_ms=100
    )
    seen: list[Any] = []
    async with sdk_client(bridge).realtime.connect(model="gpt-realtime-2.1") as conn:
        await until(conn, "session.created", seen)
        await conn.response.cancel(event_id="evt_nothing")
        error = await until(conn, "error", seen)
        assert (error.error.code, error.error.event_id) == (
            "response_cancel_not_active",
            "evt_nothing",
        )
        await ask(conn, "Talk for a while.")
        first = await until(conn, "response.output_audio.delta", seen)
        # The user talks over it: OpenAI's VAD cuts the reply; the client truncates what it
        # played itself (the bridge can't know).
        for chunk in chunks(SPEECH):
            await conn.input_audio_buffer.append(audio=chunk)
        await until(conn, "input_audio_buffer.speech_started", seen)
        done = await until(conn, "response.done", seen)
        assert done.response.status == "cancelled"
        generated_ms = reply_audio(seen, first.response_id).size * 1000 // 24000
        await conn.conversation.item.truncate(
            item_id=first.item_id, content_index=0, audio_end_ms=generated_ms + 1000
        )
        error = await until(conn, "error", seen)  # OpenAI's own answer, passed on
        assert (error.error.code, error.error.param) == ("invalid_value", "audio_end_ms")
        assert error.error.event_id is None  # the client gave its event no id
        played = generated_ms // 2
        await conn.conversation.item.truncate(
            item_id=first.item_id, content_index=0, audio_end_ms=played, event_id="evt_cut"
        )
        truncated = await until(conn, "conversation.item.truncated", seen)
        assert truncated.audio_end_ms == played
        ids = [e.event_id for e in seen]
        assert len(ids) == len(set(ids)), "the gateway's event ids collide with OpenAI's"
    truncates = emulator.sessions[0].of_type("conversation.item.truncate")
    assert [t["audio_end_ms"] for t in truncates] == [generated_ms + 1000, played]
    assert truncates[1]["event_id"] == "evt_cut"


async def test_a_renewed_openai_session_keeps_the_clients_settings_and_is_invisible(
    openai_bridge: Any,
) -> None:
    bridge, emulator = await openai_bridge(
        {"openai_session_cap": 1.5}, reply="tone", tone_seconds=0.3, speed=0
    )
    seen: list[Any] = []
    async with sdk_client(bridge).realtime.connect(model="gpt-realtime-2.1") as conn:
        await until(conn, "session.created", seen)
        await conn.session.update(
            session={
                "type": "realtime",
                "instructions": "Answer in French.",
                "audio": {"output": {"voice": "cedar"}},
            }
        )
        await until(conn, "session.updated", seen)
        await ask(conn, "Bonjour?")
        await until(conn, "response.done", seen)
        for _ in range(100):
            if len(emulator.sessions) == 2:
                break
            await asyncio.sleep(0.05)
        assert len(emulator.sessions) == 2, "the session was not renewed"
        await ask(conn, "Encore?")
        done = await until(conn, "response.done", seen)
        assert done.response.status == "completed"
    second = emulator.sessions[1].session
    assert second["instructions"] == "Answer in French."
    assert second["audio"]["output"]["voice"] == "cedar"
    assert [e.type for e in seen].count("session.created") == 1
