"""The GPT-Live emulator speaks the protocol the official SDK expects (every server message is
judged by ``openai.types.live``), paces its output by the appended input, yields to barge-ins
but not to back-channels, and ends sessions the documented ways."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import websockets
from openai import AsyncOpenAI
from openai.types.live import (
    InputTranscriptDeltaEvent,
    OutputAudioDeltaEvent,
    OutputTranscriptDeltaEvent,
    SessionClosedEvent,
    SessionStartedEvent,
)
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, InvalidStatus

from bridge.audio import g711
from tests.gpt_live_types import check_gpt_live_server_event
from tests.peer import dominant_frequency, tone

KEY = {"Authorization": "Bearer sk-test"}
RATE = 24000
PCM24: dict[str, Any] = {"type": "audio/pcm", "rate": RATE}


def speech(seconds: float, rate: int = RATE) -> np.ndarray:
    return tone(440.0, seconds, rate)


def silence(seconds: float, rate: int = RATE) -> np.ndarray:
    return np.zeros(int(seconds * rate), dtype=np.int16)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def append(ws: Any, pcm: np.ndarray, chunk_ms: int = 20, rate: int = RATE) -> None:
    """Append PCM16 as fast as the socket takes it (the appended duration is the clock)."""
    step = rate * chunk_ms // 1000
    for i in range(0, pcm.size, step):
        message = {"type": "session.input_audio.append", "audio": b64(pcm[i : i + step].tobytes())}
        await ws.send(json.dumps(message))


async def drain(ws: Any) -> list[dict[str, Any]]:
    """Every event the input appended so far brought: the server answers events in order, so
    an unmute (a no-op here) is acknowledged only after all earlier appends were consumed."""
    await ws.send(json.dumps({"type": "session.input_audio.unmute", "event_id": "sync"}))
    events: list[dict[str, Any]] = []
    while True:
        event = json.loads(await asyncio.wait_for(ws.recv(), 5))
        if event.get("client_event_id") == "sync":
            return events
        events.append(event)


async def quiet_for(ws: Any, seconds: float) -> list[dict[str, Any]]:
    """Every event until none arrives for ``seconds``."""
    events: list[dict[str, Any]] = []
    while True:
        try:
            raw = await asyncio.wait_for(ws.recv(), seconds)
        except TimeoutError:
            return events
        events.append(json.loads(raw))


async def started_session(ws: Any, **session: Any) -> dict[str, Any]:
    await ws.send(
        json.dumps({"type": "session.start", "session": {"model": "gpt-live-1", **session}})
    )
    started = json.loads(await ws.recv())
    assert started["type"] == "session.started", started
    return started  # type: ignore[no-any-return]


def output_ms(events: list[dict[str, Any]], rate: int = RATE, width: int = 2) -> float:
    audio = sum(
        len(base64.b64decode(e["delta"]))
        for e in events
        if e["type"] == "session.output_audio.delta"
    )
    return audio * 1000 / (rate * width)


def of_type(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == kind]


async def test_official_sdk_conversation(start_gpt_live: Callable[..., Any]) -> None:
    emulator = await start_gpt_live()
    client = AsyncOpenAI(api_key="sk-test", websocket_base_url=emulator.base_url)
    began = time.monotonic()
    kinds: list[str] = []

    async def recv(conn: Any) -> Any:
        raw = await asyncio.wait_for(conn.recv_bytes(), 2)
        check_gpt_live_server_event(json.loads(raw))
        event = conn.parse_event(raw)
        kinds.append(event.type)
        return event

    async with client.live.connect() as conn:
        await conn.session.start(
            session={
                "model": "gpt-live-1",
                "audio": {"format": {"type": "audio/pcm", "rate": 24000}},
            },
            event_id="start-1",
        )
        started = await recv(conn)
        assert isinstance(started, SessionStartedEvent)
        assert started.client_event_id == "start-1"
        session = started.session
        assert session.id.startswith("live_") and session.status == "active"
        assert session.expires_at - time.time() == pytest.approx(3600, abs=5)
        assert session.audio is not None and session.audio.output is not None
        assert session.audio.output.voice == "marin" and session.store is False
        assert session.input == [] and session.delegation is not None
        assert session.delegation.type == "client"

        pcm = np.concatenate([speech(1.0), silence(0.8)])
        for i in range(0, pcm.size, RATE // 50):
            await conn.session.input_audio.append(audio=b64(pcm[i : i + RATE // 50].tobytes()))

        audio = bytearray()
        heard: list[InputTranscriptDeltaEvent] = []
        said: list[OutputTranscriptDeltaEvent] = []
        while len(audio) < RATE * 2:  # one second of the reply
            event = await recv(conn)
            if isinstance(event, OutputAudioDeltaEvent):
                audio += base64.b64decode(event.delta)
            elif isinstance(event, InputTranscriptDeltaEvent):
                heard.append(event)
            elif isinstance(event, OutputTranscriptDeltaEvent):
                said.append(event)
        samples = np.frombuffer(bytes(audio), dtype="<i2")
        assert dominant_frequency(samples, RATE) == pytest.approx(660, abs=5)
        assert np.abs(samples).max() == pytest.approx(0.3 * 32767, rel=0.02)

        assert "".join(e.delta for e in heard) == "(you spoke for 1.0 s)"
        assert all(e.delta for e in heard)
        assert (heard[0].start_ms, heard[-1].end_ms) == (0, 1000)
        assert all(e.end_ms - e.start_ms == 200 for e in heard)
        assert "".join(e.delta for e in said) == "(a 660 Hz tone for 1.0 s)"
        assert said[0].start_ms == 1500 and said[-1].end_ms == 2500  # after 500 ms of silence
        # The user's transcript comes first, then the reply, its transcript interleaved.
        first_audio = kinds.index("session.output_audio.delta")
        assert kinds.index("session.output_transcript.delta") < first_audio
        assert kinds[1:6] == ["session.input_transcript.delta"] * 5

        await conn.session.close(event_id="bye")
        closed = await recv(conn)
        assert isinstance(closed, SessionClosedEvent)
        assert closed.reason == "close_requested" and closed.client_event_id == "bye"
        assert closed.session.id == session.id and closed.session.status == "active"
        assert 0 < closed.usage.seconds < 5
        async for event in conn:  # the server closes with 1000: iteration just ends
            pytest.fail(f"nothing may follow session.closed: {event}")

    assert time.monotonic() - began < 3
    rec = emulator.sessions[0]
    assert rec.close_code == 1000 and rec.closed_reason == "close_requested"
    assert rec.audio_bytes == pcm.size * 2 and rec.input_ms == pytest.approx(1800)
    assert rec.output_ms_generated == pytest.approx(1000) and rec.replies == 1
    assert not rec.yielded
    assert "OpenAI/Python" in rec.headers.get("User-Agent", "")


async def test_start_is_validated_strictly(start_gpt_live: Callable[..., Any]) -> None:
    emulator = await start_gpt_live(judge_clients=False)
    cases: list[tuple[Any, str, str | None]] = [
        ({"type": "session.input_audio.append", "audio": ""}, "session_not_started", None),
        (
            {"type": "session.commentary.append", "content": "hi", "delegation_id": None},
            "session_not_started",
            None,
        ),
        ({"type": "session.dance"}, "unknown_event", "type"),
        ("{not json", "invalid_json", None),
        ({"session": {}}, "missing_required_parameter", "type"),
        ({"type": "session.start"}, "missing_required_parameter", "session"),
        ({"type": "session.start", "session": {}, "extra": 1}, "unknown_parameter", "extra"),
    ]
    bad_sessions: list[tuple[dict[str, Any], str, str]] = [
        ({"voice": "marin"}, "unknown_parameter", "session.voice"),
        ({"temperature": 0.8}, "unknown_parameter", "session.temperature"),
        ({"audio": {"input": {}}}, "unknown_parameter", "session.audio.input"),
        (
            {"audio": {"format": {**PCM24, "channels": 1}}},
            "unknown_parameter",
            "session.audio.format.channels",
        ),
        (
            {"audio": {"output": {"voice": "marin", "speed": 1.2}}},
            "unknown_parameter",
            "session.audio.output.speed",
        ),
        (
            {"audio": {"output": {"voice": {"id": "voice_1", "name": "x"}}}},
            "unknown_parameter",
            "session.audio.output.voice.name",
        ),
        (
            {
                "input": [
                    {
                        "role": "user",
                        "content": [{"type": "input_text", "text": "hi"}],
                        "name": "bob",
                    }
                ]
            },
            "unknown_parameter",
            "session.input[0].name",
        ),
        (
            {"delegation": {"type": "client", "tools": []}},
            "unknown_parameter",
            "session.delegation.tools",
        ),
        (
            {"delegation": {"type": "responses", "responses": {"model": "gpt-5", "temp": 1}}},
            "unknown_parameter",
            "session.delegation.responses.temp",
        ),
        (
            {"client": {"data_channel": {"allowed": "all"}}},
            "unknown_parameter",
            "session.client.data_channel.allowed",
        ),
        ({"model": None}, "missing_required_parameter", "session.model"),
        ({"model": "gpt-realtime"}, "invalid_model", "session.model"),
        (
            {"audio": {"format": {"type": "audio/pcm", "rate": 8000}}},
            "invalid_value",
            "session.audio.format.rate",
        ),
        (
            {"audio": {"format": {"type": "audio/pcmu"}}},
            "missing_required_parameter",
            "session.audio.format.rate",
        ),
        (
            {"audio": {"format": {"type": "audio/opus", "rate": 48000}}},
            "invalid_value",
            "session.audio.format.type",
        ),
        ({"audio": {"output": {"voice": "nova"}}}, "invalid_value", "session.audio.output.voice"),
        (
            {"audio": {"output": {"voice": {"id": "my-voice"}}}},
            "invalid_value",
            "session.audio.output.voice.id",
        ),
        (
            {"input": [{"role": "user", "content": [{"text": "a"}, {"text": "b"}]}]},
            "invalid_value",
            "session.input[0].content",
        ),
        (
            {"input": [{"role": "user", "content": [{"type": "output_text", "text": "a"}]}]},
            "invalid_value",
            "session.input[0].content[0].type",
        ),
        (
            {"input": [{"role": "user", "content": [{"text": "a"}]}] * 129},
            "invalid_value",
            "session.input",
        ),
        ({"store": "yes"}, "invalid_type", "session.store"),
    ]
    for session, bad_code, bad_param in bad_sessions:
        body = {"type": "session.start", "session": {"model": "gpt-live-1", **session}}
        cases.append((body, bad_code, bad_param))
    async with websockets.connect(emulator.url, additional_headers=KEY) as ws:
        for i, (message, code, param) in enumerate(cases):
            if isinstance(message, dict):
                message = {**message, "event_id": f"c{i}"}
            await ws.send(message if isinstance(message, str) else json.dumps(message))
            error = json.loads(await ws.recv())
            assert error["type"] == "error", message
            body = error["error"]
            assert (body["code"], body.get("param")) == (code, param), message
            assert body["type"] == "invalid_request_error" and body["message"]
            expected_id = f"c{i}" if isinstance(message, dict) else None
            assert body.get("client_event_id") == expected_id
        assert emulator.sessions[0].session is None  # no session came of any of them

        # A valid start after the refusals: G.711, a custom voice, history, defaults filled in.
        started = await started_session(
            ws,
            instructions="Be brief.",
            audio={
                "format": {"type": "audio/pcmu", "rate": 8000},
                "output": {"voice": {"id": "voice_abc"}},
            },
            input=[
                {
                    "type": "message",
                    "role": "developer",
                    "content": [{"type": "input_text", "text": "d"}],
                },
                {"role": "assistant", "content": [{"type": "output_text", "text": "a"}]},
            ],
            safety_identifier="user-1",
        )
        session = started["session"]
        assert session["audio"]["output"]["voice"] == {"id": "voice_abc"}
        assert session["store"] is False and session["delegation"] == {"type": "client"}
        assert len(session["input"]) == 2 and session["instructions"] == "Be brief."

        after: list[tuple[dict[str, Any], str | None, str | None]] = [
            (
                {"type": "session.start", "session": {"model": "gpt-live-1"}},
                "session_already_started",
                None,
            ),
            (
                {"type": "session.update", "session": {"instructions": "x"}},
                "unknown_parameter",
                "session.instructions",
            ),
            (
                {
                    "type": "session.update",
                    "session": {
                        "delegation": {"type": "responses", "responses": {"model": "gpt-5"}}
                    },
                },
                "invalid_value",
                "session.delegation.type",
            ),
            (
                {
                    "type": "session.update",
                    "session": {"delegation": {"type": "client", "acknowledgement_delay_ms": 250}},
                },
                None,
                None,
            ),
            ({"type": "session.update", "session": {"triggers": []}}, None, None),
            (
                {"type": "session.instructions.append", "content": "Be kind."},
                "missing_required_parameter",
                "delegation_id",
            ),
            (
                {"type": "session.thinking.append", "delegation_id": None},
                "missing_required_parameter",
                "content",
            ),
            (
                {"type": "session.commentary.append", "content": "x", "delegation_id": "del_nope"},
                "invalid_value",
                "delegation_id",
            ),
            (
                {
                    "type": "session.instructions.append",
                    "content": "Be kind.",
                    "delegation_id": None,
                },
                None,
                None,
            ),
            (
                {"type": "session.thinking.append", "content": "hm", "delegation_id": None},
                None,
                None,
            ),
            ({"type": "session.input_audio.mute"}, None, None),
            ({"type": "session.input_audio.unmute"}, None, None),
            ({"type": "session.input_audio.append", "audio": "%%%"}, "invalid_value", "audio"),
            (
                {"type": "session.input_audio.append", "audio": "AAAA", "rate": 8000},
                "unknown_parameter",
                "rate",
            ),
            ({"type": "response.create"}, "unsupported_event", "type"),
            ({"type": "conversation.item.create"}, "unknown_event", "type"),
        ]
        for i, (message, want, where) in enumerate(after):
            await ws.send(json.dumps({**message, "event_id": f"a{i}"}))
            reply = json.loads(await ws.recv())
            if want is None:
                assert reply["type"] != "error" and reply["client_event_id"] == f"a{i}", reply
            else:
                assert reply["type"] == "error", message
                assert (reply["error"]["code"], reply["error"].get("param")) == (want, where)
                assert reply["error"]["client_event_id"] == f"a{i}"
        rec = emulator.sessions[0]
        updated = rec.of_type("session.updated")
        assert updated[0]["session"]["delegation"] == {
            "type": "client",
            "acknowledgement_delay_ms": 250,
        }
        assert updated[-1]["session"]["id"] == session["id"]  # the full session each time
        assert rec.of_type("session.started")[0]["session"]["delegation"] == {"type": "client"}
        appended = rec.of_type("session.instructions.appended")[0]
        assert appended["start_ms"] == appended["end_ms"] == 0
        kinds = [m["type"] for m in rec.sent]
        assert "session.input_audio.muted" in kinds and "session.input_audio.unmuted" in kinds
        assert rec.appended == [("instructions", "Be kind.", None), ("thinking", "hm", None)]


async def test_upgrade_checks(start_gpt_live: Callable[..., Any]) -> None:
    emulator = await start_gpt_live(invalid_key=True)
    cases = [
        (emulator.url, {}, 401),  # no key at all
        (emulator.url, KEY, 401),  # invalid_key: refused once
        (emulator.url + "?model=gpt-live-1", KEY, 400),
        (emulator.url.replace("/live/sessions", "/realtime"), KEY, 404),
    ]
    for url, headers, status in cases:
        with pytest.raises(InvalidStatus) as caught:
            async with websockets.connect(url, additional_headers=headers):
                pass
        response = caught.value.response
        assert response.status_code == status, url
        if status != 404:
            error = json.loads(response.body)["error"]
            assert error["type"] == "invalid_request_error" and error["message"]
    # The fault fired once; another prefix before /live/sessions is fine.
    other = emulator.url.replace("/v1/live", "/openai/v1/live")
    async with websockets.connect(other, additional_headers=KEY) as ws:
        await started_session(ws)
    allowing = await start_gpt_live(allow_model_query=True)
    async with websockets.connect(allowing.url + "?model=x", additional_headers=KEY) as ws:
        await started_session(ws)


async def test_output_is_paced_by_the_input_clock(start_gpt_live: Callable[..., Any]) -> None:
    emulator = await start_gpt_live(tone_seconds=2.0)
    async with websockets.connect(emulator.url, additional_headers=KEY) as ws:
        await started_session(ws)
        # The utterance ends 500 ms after the tone (1.5 s); 100 ms more input pays for 400 ms.
        await append(ws, np.concatenate([speech(1.0), silence(0.6)]))
        first = await drain(ws)
        assert output_ms(first) == pytest.approx(400)
        # No appends, no output: the client went quiet mid-reply.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ws.recv(), 0.5)
        await append(ws, silence(0.2))  # 4x: 800 ms more
        assert output_ms(await drain(ws)) == pytest.approx(800)
        await append(ws, silence(1.0))  # the rest (800 ms), and nothing beyond the reply
        rest = await drain(ws)
        assert output_ms(rest) == pytest.approx(800)
        said = "".join(e["delta"] for e in of_type(first + rest, "session.output_transcript.delta"))
        assert said.startswith("(a 660") and emulator.sessions[0].output_transcript == (
            "(a 660 Hz tone for 2.0 s)"
        )
    rec = emulator.sessions[0]
    assert rec.output_ms_generated == pytest.approx(2000) and rec.replies == 1


async def test_barge_in_yields_and_back_channel_does_not(
    start_gpt_live: Callable[..., Any],
) -> None:
    emulator = await start_gpt_live(tone_seconds=3.0)
    async with websockets.connect(emulator.url, additional_headers=KEY) as ws:
        await started_session(ws)
        await append(ws, np.concatenate([speech(1.0), silence(0.6)]))
        assert output_ms(await drain(ws)) == pytest.approx(400)
        # 600 ms of speech over the reply: it goes on for 200 ms of it (800 ms more), then stops.
        await append(ws, speech(0.6))
        assert output_ms(await drain(ws)) == pytest.approx(800)
        await append(ws, silence(0.4))  # no event, and no more of the old reply
        assert await drain(ws) == []
        rec = emulator.sessions[0]
        assert rec.yielded and rec.yields == [(1800.0, 1200.0)]
        assert (rec.yielded_at_input_ms, rec.yielded_output_ms) == (1800.0, 1200.0)
        # The interruption was an utterance: once it ends, it is transcribed and answered.
        await append(ws, silence(0.2))
        events = await drain(ws)
        heard = "".join(e["delta"] for e in of_type(events, "session.input_transcript.delta"))
        assert heard == "(you spoke for 0.6 s)"
        assert of_type(events, "session.input_transcript.delta")[0]["start_ms"] == 1600
        assert output_ms(events) == pytest.approx(400) and rec.replies == 2

    # A 150 ms back-channel does not stop the reply.
    async with websockets.connect(emulator.url, additional_headers=KEY) as ws:
        await started_session(ws)
        await append(ws, np.concatenate([speech(1.0), silence(0.6)]))
        await append(ws, speech(0.15))
        await append(ws, silence(0.7))
        events = await drain(ws)
        rec = emulator.sessions[1]
        assert output_ms(events) == pytest.approx(3000)  # all of it
        assert not rec.yielded and rec.replies == 1
        assert rec.input_transcript == "(you spoke for 1.0 s)"  # the back-channel: no reply


async def test_commentary_delegation_trailing_silence_and_g711_echo(
    start_gpt_live: Callable[..., Any],
) -> None:
    emulator = await start_gpt_live(
        delegate_on_speech=True, tone_seconds=0.5, trailing_silence_ms=300
    )
    async with websockets.connect(emulator.url, additional_headers=KEY) as ws:
        await started_session(ws)
        await append(ws, np.concatenate([speech(0.5), silence(0.6)]))
        events = await drain(ws)
        kinds = [e["type"] for e in events]
        created = of_type(events, "session.delegation.created")[0]
        assert kinds.index("session.delegation.created") < kinds.index("session.output_audio.delta")
        assert created["delegation"]["target"] == "client" and created["offset_ms"] == 1000
        assert created["delegation"]["id"].startswith("del_")
        await ws.send(
            json.dumps(
                {
                    "type": "session.commentary.append",
                    "event_id": "c1",
                    "content": "Your order shipped.",
                    "delegation_id": created["delegation"]["id"],
                }
            )
        )
        ack = json.loads(await ws.recv())
        assert ack["type"] == "session.commentary.appended" and ack["client_event_id"] == "c1"
        assert ack["start_ms"] == ack["end_ms"] == 1100
        await append(ws, silence(0.5))
        events += await drain(ws)
        chunks = [
            np.frombuffer(base64.b64decode(e["delta"]), dtype="<i2")
            for e in of_type(events, "session.output_audio.delta")
        ]
        loud = [bool(np.abs(c).max() > 0) for c in chunks]
        # The first reply's trailing silence gave way to the commentary; the second kept it.
        assert loud == [True] * 5 + [True] * 5 + [False] * 3
        said = "".join(e["delta"] for e in of_type(events, "session.output_transcript.delta"))
        assert said == "(a 660 Hz tone for 0.5 s)Your order shipped."
    rec = emulator.sessions[0]
    assert rec.replies == 2 and rec.output_ms_generated == pytest.approx(1300)
    assert rec.appended == [("commentary", "Your order shipped.", rec.delegations[0])]

    echo = await start_gpt_live(reply="echo")
    async with websockets.connect(echo.url, additional_headers=KEY) as ws:
        await started_session(ws, audio={"format": {"type": "audio/pcma", "rate": 8000}})
        pcm = np.concatenate([tone(350.0, 0.8, 8000), silence(0.8, 8000)])
        law = g711.encode(pcm, "pcma")
        for i in range(0, len(law), 160):  # 20 ms of A-law
            await ws.send(
                json.dumps({"type": "session.input_audio.append", "audio": b64(law[i : i + 160])})
            )
        events = await drain(ws)
        back = b"".join(
            base64.b64decode(e["delta"]) for e in of_type(events, "session.output_audio.delta")
        )
        assert len(back) == 0.8 * 8000  # one byte a sample, the whole utterance
        assert dominant_frequency(g711.decode(back, "pcma"), 8000) == pytest.approx(350, abs=5)
    assert echo.sessions[0].input_ms == pytest.approx(1600)


async def test_usage_close_and_expiry(start_gpt_live: Callable[..., Any]) -> None:
    emulator = await start_gpt_live(usage_interval_s=0.2)
    async with websockets.connect(emulator.url, additional_headers=KEY) as ws:
        await started_session(ws)
        usage: list[float] = []
        while len(usage) < 3:
            event = json.loads(await asyncio.wait_for(ws.recv(), 1))
            assert event["type"] == "session.usage.updated"
            usage.append(event["usage"]["seconds"])
        assert usage == sorted(usage) and usage[0] == pytest.approx(0.2, abs=0.15)
        assert usage[2] - usage[0] == pytest.approx(0.4, abs=0.15)  # cumulative, not increments
        await ws.send(json.dumps({"type": "session.close", "event_id": "bye"}))
        closed = json.loads(await ws.recv())
        while closed["type"] == "session.usage.updated":
            closed = json.loads(await ws.recv())
        assert closed["type"] == "session.closed" and closed["reason"] == "close_requested"
        assert closed["client_event_id"] == "bye" and closed["usage"]["seconds"] >= usage[-1]
        with pytest.raises(ConnectionClosed):
            await ws.recv()
        assert ws.close_code == 1000
    assert emulator.sessions[0].close_code == 1000

    expiring = await start_gpt_live(lifetime_s=0.3)
    async with websockets.connect(expiring.url, additional_headers=KEY) as ws:
        started = await started_session(ws)
        assert started["session"]["expires_at"] == pytest.approx(time.time(), abs=2)
        closed = json.loads(await asyncio.wait_for(ws.recv(), 2))
        assert closed["type"] == "session.closed" and closed["reason"] == "expired"
        assert closed["usage"]["seconds"] == pytest.approx(0.3, abs=0.2)
        assert "client_event_id" not in closed
        with pytest.raises(ConnectionClosed):
            await ws.recv()
        assert ws.close_code == 1000


async def test_faults_drop_and_stall(start_gpt_live: Callable[..., Any]) -> None:
    emulator = await start_gpt_live(drop_after_s=0.3)
    async with websockets.connect(emulator.url, additional_headers=KEY) as ws:
        await started_session(ws)
        with pytest.raises(ConnectionClosedError) as caught:
            await asyncio.wait_for(ws.recv(), 2)
        assert caught.value.rcvd is not None and caught.value.rcvd.code == 1011
    assert emulator.sessions[0].close_code == 1011
    assert emulator.sessions[0].closed_reason is None  # no session.closed: usage unconfirmed
    async with websockets.connect(emulator.url, additional_headers=KEY) as ws:
        await started_session(ws)  # the fault fired once

    stalling = await start_gpt_live(stall_after_s=0.25, usage_interval_s=0.1)
    async with websockets.connect(stalling.url, additional_headers=KEY, close_timeout=0.1) as ws:
        await started_session(ws)
        before = await quiet_for(ws, 0.3)
        assert 1 <= len(of_type(before, "session.usage.updated")) <= 2
        await append(ws, speech(0.2))
        assert await quiet_for(ws, 0.4) == []  # nothing more, yet the socket stays open
    assert stalling.sessions[0].stalled
