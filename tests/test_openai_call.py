"""WebRTC clients talking through the bridge to the OpenAI emulator, over real sockets."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

from bridge.audio import g711
from bridge.server.keys import ENGINE
from tests.peer import ClientPeer, dominant_frequency, rms
from tests.support import OPENAI_TEST_KEY, wait_heard

SESSION = {
    "instructions": "Answer in one sentence.",
    "voice": "coral",
    "turn_detection": {"type": "server_vad", "silence_duration_ms": 400, "threshold": 0.5},
}


async def test_a_turn_through_the_openai_emulator(openai_bridge: Any) -> None:
    bridge, emulator = await openai_bridge(reply="tone", tone_hz=660, tone_seconds=1.0)
    client = ClientPeer()
    await client.connect(bridge.http, bridge.url, session=SESSION)
    try:
        await client.wait_connected()
        await client.wait_event("open")
        client.mic.say(440, 1.0)
        client.mic.pause(1.0)
        stopped_at, _ = await client.wait_event("speechStopped")
        _, usage = await client.wait_event("usage")
        reply = await wait_heard(client, 0.9, stopped_at)

        (rec,) = emulator.sessions
        assert rec.headers.get("OpenAI-Beta") is None
        first = rec.received[0]
        assert first["type"] == "session.update"
        session = first["session"]
        assert session["type"] == "realtime"
        assert session["instructions"] == "Answer in one sentence."
        assert session["output_modalities"] == ["audio"]
        assert session["audio"]["output"] == {
            "format": {"type": "audio/pcm", "rate": 24000},
            "voice": "coral",
        }
        audio_in = session["audio"]["input"]
        assert audio_in["format"] == {"type": "audio/pcm", "rate": 24000}
        assert audio_in["turn_detection"] == SESSION["turn_detection"]
        assert audio_in["transcription"] == {"model": "gpt-4o-mini-transcribe"}

        # What the bridge appended is PCM16 mono 24 kHz carrying the client's 440 Hz tone.
        # A 1 s tone spans 24 000 samples: the rate is right, not just the pitch.
        pcm = np.frombuffer(bytes(rec.audio), dtype="<i2")
        loud = np.flatnonzero(np.abs(pcm) > 2000)
        assert 0.97 <= (loud[-1] - loud[0]) / 24000 <= 1.03, (loud[-1] - loud[0]) / 24000
        assert abs(dominant_frequency(pcm[loud[0] : loud[0] + 12000], 24000) - 440) < 5

        # The client hears the emulator's 660 Hz reply and gets the turn's events.
        assert abs(dominant_frequency(reply, client.heard.rate) - 660) < 10
        types = client.event_types()
        assert "transcript" in types
        deltas = [e for _, e in client.events if e["type"] == "transcript" and not e["final"]]
        assert any(e["role"] == "assistant" for e in deltas)
        assert any(e["role"] == "user" for _, e in client.events if e["type"] == "transcript")
        assert types.index("turnComplete") < types.index("usage")
        assert usage["usage"]["output_token_details"]["audio_tokens"] > 0
        assert usage["cost_usd"] is not None and usage["cost_usd"] > 0
    finally:
        await client.close()


async def test_barge_in_truncates_at_what_the_client_heard(openai_bridge: Any) -> None:
    bridge, emulator = await openai_bridge(
        reply="tone", tone_hz=660, tone_seconds=3.0, barge_in_after_s=1.0
    )
    client = ClientPeer()
    await client.connect(bridge.http, bridge.url)
    try:
        await client.wait_connected()
        await client.wait_event("open")
        client.mic.say(440, 0.8)
        client.mic.pause(0.5)
        stopped_at, _ = await client.wait_event("speechStopped")
        first = client.event_types().index("speechStarted")
        barge_at, _ = await client.wait_event("speechStarted", after=first + 1)
        await asyncio.sleep(0.6)

        reply = [(t, s) for t, s in client.heard.frames if t > stopped_at and rms(s) > 300]
        heard_ms = sum(s.size for _, s in reply) / client.heard.rate * 1000
        stop_ms = (reply[-1][0] - barge_at) * 1000
        assert 500 < heard_ms < 1500, heard_ms  # cut about 1 s into the 3 s reply

        (rec,) = emulator.sessions
        (truncate,) = rec.of_type("conversation.item.truncate")
        end_ms = truncate["audio_end_ms"]
        print(
            f"\nopenai barge-in: client heard {heard_ms:.0f} ms, truncate audio_end_ms={end_ms}, "
            f"reply stopped {stop_ms:.0f} ms after the client got speechStarted"
        )
        assert abs(end_ms - heard_ms) <= 60
        assert stop_ms < 300
        assert truncate["content_index"] == 0
        assert truncate["item_id"] in rec.generated_ms
        assert not rec.errors, rec.errors  # the emulator accepted the truncate
    finally:
        await client.close()


async def test_a_pcmu_peer_is_bridged_as_g711_without_resampling(openai_bridge: Any) -> None:
    bridge, emulator = await openai_bridge(reply="tone", tone_hz=660, tone_seconds=1.0)
    client = ClientPeer(codecs=("PCMU",))
    await client.connect(bridge.http, bridge.url)
    try:
        await client.wait_connected()
        await client.wait_event("open")
        client.mic.say(440, 1.0)
        client.mic.pause(1.0)
        stopped_at, _ = await client.wait_event("speechStopped")
        reply = await wait_heard(client, 0.9, stopped_at)
        assert client.heard.rate == 8000
        assert abs(dominant_frequency(reply, 8000) - 660) < 10

        (rec,) = emulator.sessions
        audio = rec.received[0]["session"]["audio"]
        assert audio["input"]["format"] == {"type": "audio/pcmu"}
        assert audio["output"]["format"]["type"] == "audio/pcmu"
        pcm = g711.decode(bytes(rec.audio), "pcmu")
        loud = np.flatnonzero(np.abs(pcm) > 2000)
        assert 0.97 <= (loud[-1] - loud[0]) / 8000 <= 1.03
        assert abs(dominant_frequency(pcm[loud[0] : loud[0] + 4000], 8000) - 440) < 5
        (described,) = await bridge.sessions()
        assert described["provider_audio"] == {
            "input": "pcmu",
            "input_rate": 8000,
            "output_passthrough": True,
        }
    finally:
        await client.close()


async def test_webrtc_calls_fire_the_engines_hooks_and_show_their_cost(openai_bridge: Any) -> None:
    """A WebRTC call runs on the same conversation core as an SDK session: same hooks, same
    cost collector, and its running cost in GET /sessions."""
    bridge, _emulator = await openai_bridge(reply="tone", tone_seconds=0.4)
    engine = bridge.app[ENGINE]
    seen: dict[str, list[Any]] = {"onRealtimeOpen": [], "onCompletion": [], "onRealtimeFrame": []}
    for name, found in seen.items():
        engine.hooks.on(name, found.append)
    client = ClientPeer()
    await client.connect(bridge.http, bridge.url)
    try:
        await client.wait_connected()
        await client.wait_event("open")
        client.mic.say(440, 0.6)
        client.mic.pause(0.8)
        _, usage = await client.wait_event("usage")
        (described,) = await bridge.sessions()
        (opened,) = seen["onRealtimeOpen"]
        assert opened.session_id == described["id"] and opened.provider == "openai"
        assert OPENAI_TEST_KEY not in opened.url
        (completion,) = seen["onCompletion"]
        assert completion.cost_usd == usage["cost_usd"] == described["cost_usd"]
        assert described["transport"] == "webrtc" and described["usage_reports"] == 1
        assert seen["onRealtimeFrame"] and all(f.size > 0 for f in seen["onRealtimeFrame"])
        assert engine.costs.sessions[described["id"]].usd == described["cost_usd"]
    finally:
        await client.close()
