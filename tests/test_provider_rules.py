"""What the 2026 APIs allow, enforced before the provider has to refuse it: current default
models, retired models, turn detection per type, the voice lock, one reply at a time, and no
credential in any error a peer sees."""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
from typing import Any

import pytest
import websockets

from bridge.core.redact import REDACTED, redact
from bridge.providers.models import gemini_model, openai_lifecycle
from tests.peer import ClientPeer, connected
from tests.support import OPENAI_TEST_KEY

KEY = {"Authorization": "Bearer sk-anything"}


async def test_default_models_are_current(start_bridge: Any) -> None:
    bridge = await start_bridge()
    async with bridge.http.get(f"{bridge.url}/providers") as r:
        providers = {p["name"]: p for p in (await r.json())["providers"]}
    assert providers["openai"]["default_model"] == "gpt-realtime-2.1"
    assert providers["gemini"]["default_model"] == "gemini-3.8-live"
    models = {m["id"]: m for m in providers["openai"]["models"]}
    assert models["gpt-realtime-2.1"]["status"] == "current"
    assert models["gpt-realtime"]["shutdown"] == "2027-01-20"
    assert models["gpt-realtime"]["replacement"] == "gpt-realtime-2.1"
    assert "gemini-3.8-live" in [m["id"] for m in providers["gemini"]["models"]]
    # gpt-4o-mini-transcribe (the transcription default) is within 90 days of its shutdown
    # from 2026-11-28 on; the default realtime model has no date.
    notes = providers["openai"]["warnings"]
    if datetime.date.today() >= datetime.date(2026, 11, 28):
        assert notes == [
            "input transcription: gpt-4o-mini-transcribe shuts down on 2027-02-26; use "
            "gpt-live-transcribe (--openai-transcription-model)"
        ]
    assert not [n for n in notes if "gpt-realtime-2.1" in n]


def test_model_lifecycles() -> None:
    now = datetime.date(2026, 11, 23)
    realtime = openai_lifecycle("gpt-realtime")
    assert realtime.status(now) == "deprecated"
    assert realtime.warning("gpt-realtime", now) == (
        "gpt-realtime shuts down on 2027-01-20; use gpt-realtime-2.1"
    )
    assert realtime.status(datetime.date(2027, 1, 20)) == "retired"
    assert openai_lifecycle("gpt-realtime-2.1").warning("gpt-realtime-2.1", now) is None
    assert openai_lifecycle("gpt-4o-realtime-preview-2025-06-03").status(now) == "retired"
    assert openai_lifecycle("gpt-realtime-2").status(datetime.date(2030, 1, 1)) == "current"
    far = datetime.date(2026, 6, 1)  # more than 90 days before: no noise yet
    assert realtime.warning("gpt-realtime", far) is None
    assert gemini_model("models/gemini-3.8-live").audio_only
    assert not gemini_model("gemini-live-2.5-flash-preview").audio_only


async def test_a_retired_model_is_refused_and_a_dated_one_logged(
    openai_bridge: Any, caplog: pytest.LogCaptureFixture
) -> None:
    bridge, emulator = await openai_bridge()
    client = ClientPeer()
    sdp = await client.offer()
    body = {"sdp": sdp, "type": "offer", "model": "gpt-4o-realtime-preview"}
    async with bridge.http.post(f"{bridge.url}/offer", json=body) as r:
        assert r.status == 400
        error = (await r.json())["error"]
    assert error["code"] == "model_retired" and "gpt-realtime-2.1" in error["message"]
    assert emulator.sessions == [] and len(bridge.registry) == 0
    await client.close()
    caplog.set_level(logging.WARNING, logger="bridge")
    client = await connected(bridge, model="gpt-realtime")
    await client.close()
    if datetime.date.today() < datetime.date(2027, 1, 20):
        assert any("gpt-realtime shuts down on 2027-01-20" in r.message for r in caplog.records)


async def test_turn_detection_is_checked_per_type_before_anything_is_sent(
    openai_bridge: Any,
) -> None:
    bridge, emulator = await openai_bridge()
    client = ClientPeer()
    sdp = await client.offer()
    bad = {"type": "semantic_vad", "silence_duration_ms": 300}
    body = {"sdp": sdp, "type": "offer", "session": {"turn_detection": bad}}
    async with bridge.http.post(f"{bridge.url}/offer", json=body) as r:
        error = (await r.json())["error"]
    assert r.status == 400 and error["code"] == "invalid_session"
    assert "silence_duration_ms" in error["message"] and "eagerness" in error["message"]
    await client.close()
    client = await connected(bridge)
    try:
        update = {"type": "session.update", "session": {"turn_detection": bad}}
        client.channel.send(json.dumps(update))
        _, event = await client.wait_event("error")
        assert event["error"]["code"] == "invalid_session"
        good = {"type": "semantic_vad", "eagerness": "high"}
        client.channel.send(
            json.dumps({"type": "session.update", "session": {"turn_detection": good}})
        )
        (rec,) = emulator.sessions
        while len(rec.of_type("session.update")) < 2:
            await asyncio.sleep(0.02)
        updates = rec.of_type("session.update")
        assert updates[-1]["session"]["audio"]["input"]["turn_detection"] == good
        assert not rec.errors
    finally:
        await client.close()


async def speak_and_wait_reply(client: ClientPeer) -> None:
    count = client.event_types().count("turnComplete")
    client.mic.say(440, 0.6)
    client.mic.pause(0.6)
    while client.event_types().count("turnComplete") == count:
        await client.wait_event("turnComplete", after=len(client.events))


async def test_a_voice_change_after_audio_keeps_the_voice_and_applies_the_rest(
    openai_bridge: Any,
) -> None:
    bridge, emulator = await openai_bridge(reply="tone", tone_seconds=0.4)
    client = await connected(bridge, session={"voice": "marin"})
    try:
        await speak_and_wait_reply(client)  # the session has spoken: its voice is fixed
        update = {"voice": "cedar", "instructions": "Be brief."}
        client.channel.send(json.dumps({"type": "session.update", "session": update}))
        _, event = await client.wait_event("error")
        assert event["error"]["code"] == "voice_locked" and "marin" in event["error"]["message"]
        (rec,) = emulator.sessions
        while len(rec.of_type("session.update")) < 2:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)
        assert not rec.errors, rec.errors  # OpenAI had nothing to refuse
        assert rec.session["instructions"] == "Be brief."
        assert rec.session["audio"]["output"]["voice"] == "marin"
        assert "close" not in client.event_types()
    finally:
        await client.close()


async def test_the_emulator_refuses_a_voice_change_after_audio(start_openai_emulator: Any) -> None:
    emulator = await start_openai_emulator(reply="tone", tone_seconds=0.2, speed=0)
    async with websockets.connect(emulator.url, additional_headers=KEY) as ws:
        await ws.recv()
        await ws.send(json.dumps({"type": "response.create"}))
        while json.loads(await ws.recv())["type"] != "response.done":
            pass
        change = {"type": "realtime", "instructions": "x", "audio": {"output": {"voice": "ash"}}}
        await ws.send(json.dumps({"type": "session.update", "event_id": "v1", "session": change}))
        while (message := json.loads(await ws.recv()))["type"] != "error":
            pass
        assert message["error"]["code"] == "cannot_update_voice"
        assert message["error"]["event_id"] == "v1"
    (rec,) = emulator.sessions
    assert rec.session["instructions"] != "x"  # the whole update was refused


async def test_a_typed_message_during_a_reply_is_answered_after_it(openai_bridge: Any) -> None:
    bridge, emulator = await openai_bridge(reply="tone", tone_seconds=2.0, speed=1)
    client = await connected(bridge)
    try:
        client.channel.send('{"type": "text", "text": "first"}')
        await client.wait_event("transcript")  # the first reply is under way
        client.channel.send('{"type": "text", "text": "second"}')
        _, _ = await client.wait_event("turnComplete", timeout=10)
        first_done = client.event_types().index("turnComplete")
        await client.wait_event("turnComplete", after=first_done + 1, timeout=10)
        (rec,) = emulator.sessions
        creates = rec.of_type("response.create")
        assert len(creates) == 2
        assert not [
            e for e in rec.errors if e["code"] == "conversation_already_has_active_response"
        ]
        texts = [m["item"]["content"][0]["text"] for m in rec.of_type("conversation.item.create")]
        assert texts == ["first", "second"]
        (described,) = await bridge.sessions()
        assert described["provider_stats"]["queued_texts"] == 1
    finally:
        await client.close()


def test_redaction_patterns() -> None:
    samples = {
        "Incorrect API key provided: sk-test-***cdef.": "sk-test",
        "key sk-proj-AbC123_x-Yz9 was wrong": "sk-proj",
        "url wss://h/ws?key=AIzaSyA-1234567890abcdef&alt=json": "AIzaSy",
        "token auth_tokens/Ck9abc.def_12": "Ck9abc",
        "Authorization: Bearer abcdefghijklmnop1234": "abcdefgh",
        "jwt eyJhbGciOi.eyJzdWIiOiIx.sig-nature": "eyJ",
        "ephemeral ek_68af2b3c4d5e": "ek_68",
    }
    for text, secret in samples.items():
        cleaned = redact(text)
        assert secret not in cleaned and REDACTED in cleaned, cleaned
    assert redact("my-own-secret-value here", ["my-own-secret-value"]) == f"{REDACTED} here"
    assert redact("Request trace id: 5f3a, the model is busy") == (
        "Request trace id: 5f3a, the model is busy"
    )


async def test_a_provider_error_never_shows_the_key(openai_bridge: Any) -> None:
    """OpenAI quotes part of a wrong key back; the peer sees it redacted."""
    bridge, _emulator = await openai_bridge(invalid_key_in_band=True)
    client = ClientPeer()
    await client.connect(bridge.http, bridge.url)
    try:
        _, event = await client.wait_event("error", timeout=10)
        message = event["error"]["message"]
        assert event["error"]["code"] == "invalid_api_key"
        assert REDACTED in message and "Incorrect API key provided" in message
        assert OPENAI_TEST_KEY[:7] not in message and OPENAI_TEST_KEY[-4:] not in message
        await client.wait_event("close", timeout=10)
    finally:
        await client.close()
