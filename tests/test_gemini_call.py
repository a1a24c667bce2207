"""WebRTC clients through the bridge to the Gemini Live emulator, over real sockets."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import numpy as np
import pytest

from tests.peer import ClientPeer, connected, dominant_frequency, rms
from tests.support import assert_ended_by_provider, snr_vs_ideal_tone, wait_heard, wait_until

SESSION = {
    "instructions": "Be brief.",
    "voice": "Kore",
    "turn_detection": {"type": "server_vad", "silence_duration_ms": 400},
}


@pytest.mark.parametrize("codec", ["opus", "PCMU"])
async def test_a_turn_through_the_gemini_emulator(gemini_bridge: Any, codec: str) -> None:
    bridge, emulator = await gemini_bridge(reply="tone", tone_hz=660, tone_seconds=1.0)
    client = await connected(bridge, codecs=(codec,), session=SESSION)
    try:
        client.mic.say(440, 1.0)
        client.mic.pause(1.0)
        _, usage = await client.wait_event("usage", timeout=10)
        reply = await wait_heard(client, 0.9, 0.0)

        (rec,) = emulator.sessions
        setup = rec.setup
        assert setup["model"] == "models/gemini-3.8-live"
        assert setup["generationConfig"] == {
            "responseModalities": ["AUDIO"],
            "speechConfig": {"voiceConfig": {"prebuiltVoiceConfig": {"voiceName": "Kore"}}},
        }
        assert setup["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
        assert setup["realtimeInputConfig"]["automaticActivityDetection"] == {
            "disabled": False,
            "silenceDurationMs": 400,
        }
        assert setup["inputAudioTranscription"] == setup["outputAudioTranscription"] == {}
        assert setup["sessionResumption"] == {}  # Developer API: no `transparent`
        assert "slidingWindow" in setup["contextWindowCompression"]

        # Uplink: 16 kHz PCM16 declared as such, carrying the client's 1 s tone.
        assert {rate for _, _, rate in rec.audio} == {16000}
        pcm = np.frombuffer(rec.heard(), dtype="<i2")
        loud = np.flatnonzero(np.abs(pcm) > 2000)
        assert 0.97 <= (loud[-1] - loud[0]) / 16000 <= 1.03
        assert abs(dominant_frequency(pcm[loud[0] : loud[0] + 8000], 16000) - 440) < 5

        # Downlink: the 24 kHz reply tone, transcripts, turnComplete, usage with a cost.
        assert abs(dominant_frequency(reply, client.heard.rate) - 660) < 10
        roles = {e["role"] for _, e in client.events if e["type"] == "transcript"}
        assert roles == {"user", "assistant"}
        types = client.event_types()
        # Gemini 3.x's voiceActivity reaches the peer as speech events.
        assert types.index("speechStarted") < types.index("speechStopped")
        assert types.index("speechStopped") < types.index("turnComplete")
        assert types.index("turnComplete") <= types.index("usage")
        assert usage["usage"]["responseTokensDetails"][0]["modality"] == "AUDIO"
        assert usage["cost_usd"] is not None and usage["cost_usd"] > 0
        (described,) = await bridge.sessions()
        assert described["cost_usd"] == usage["cost_usd"]
    finally:
        await client.close()


async def test_the_call_costs_the_sum_of_every_turns_usage(gemini_bridge: Any) -> None:
    """Gemini re-bills the whole context each turn: the bill is the sum of the snapshots."""
    bridge, _emulator = await gemini_bridge(reply="tone", tone_seconds=0.3)
    client = await connected(bridge)
    try:
        for _ in range(3):
            client.channel.send('{"type": "text", "text": "again"}')
            count = client.event_types().count("usage")
            while client.event_types().count("usage") == count:
                await client.wait_event("usage", after=len(client.events))
        usages = [e for _, e in client.events if e["type"] == "usage"]
        prompts = [u["usage"]["promptTokenCount"] for u in usages]
        assert prompts == sorted(prompts) and prompts[0] < prompts[-1]  # the context grows
        (described,) = await bridge.sessions()
        assert described["usage_reports"] == len(usages)
        assert described["cost_usd"] == pytest.approx(sum(u["cost_usd"] for u in usages))
        assert described["cost_usd"] > usages[-1]["cost_usd"]
    finally:
        await client.close()


async def test_a_reply_slower_than_real_time_plays_without_gaps(gemini_bridge: Any) -> None:
    bridge, _emulator = await gemini_bridge(reply="tone", tone_seconds=2.5, speed=0.8)
    client = await connected(bridge)
    try:
        client.mic.say(440, 0.6)
        client.mic.pause(0.4)
        await client.wait_event("turnComplete", timeout=15)
        loop = asyncio.get_running_loop()
        while (loud := client.heard.loud_frames()) and loud[-1][0] > loop.time() - 0.4:
            await asyncio.sleep(0.05)  # until the reply has finished playing
        frames = client.heard.frames
        loud = [i for i, (_, s) in enumerate(frames) if rms(s) > 500]
        inside = frames[loud[0] : loud[-1] + 1]
        quiet = [i for i, (_, s) in enumerate(inside) if rms(s) <= 500]
        track = next(iter(bridge.registry)).transport.track
        print(
            f"\nslow producer (0.8x): {len(inside)} reply frames, {len(quiet)} quiet inside, "
            f"rebuffers={track.playout.rebuffers}, gap_ms={track.playout.gap_ms}"
        )
        assert len(inside) >= 115  # the whole 2.5 s reply (125 frames, Opus edges aside)
        assert quiet == [], f"gaps inside the reply at frames {quiet}"
        assert track.playout.rebuffers == 0 and track.playout.gap_ms == 0
    finally:
        await client.close()


async def test_interrupted_flushes_playback_at_once(gemini_bridge: Any) -> None:
    bridge, _emulator = await gemini_bridge(reply="tone", tone_seconds=4.0, speed=1.0)
    client = await connected(bridge)
    try:
        client.mic.say(440, 0.6)
        client.mic.pause(0.6)
        while not client.heard.loud_frames():
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.6)
        client.mic.say(440, 0.6)  # talk over the reply
        interrupted_at, _ = await client.wait_event("interrupted", timeout=5)
        await asyncio.sleep(0.5)
        reply = [t for t, s in client.heard.frames if rms(s) > 500 and t < interrupted_at + 0.5]
        stop_ms = (reply[-1] - interrupted_at) * 1000
        print(f"\ngemini interrupted: reply stopped {stop_ms:.0f} ms after the client got it")
        assert stop_ms < 300
        heard_s = len(reply) * 0.02
        assert heard_s < 3.0, "the 4 s reply was not cut"
    finally:
        await client.close()


def tone_continuity(pcm: np.ndarray, rate: int) -> tuple[float, float]:
    """Seconds between the first and last loud sample, and SNR against one ideal sine."""
    loud = np.flatnonzero(np.abs(pcm) > 2000)
    span = pcm[loud[0] + rate // 50 : loud[-1] - rate // 50]  # skip the fades
    return (loud[-1] - loud[0]) / rate, snr_vs_ideal_tone(span, rate)


def stitched(resumed: Any) -> tuple[bytes, int]:
    """The user audio a resumed session holds, with the documented overlap taken out once:
    what its handle covered, then what the bridge replayed and sent after. Returns the audio
    and the overlap in bytes. The replay starts with the very bytes the handle already had
    (exact copies), so the overlap is found by matching them."""
    parent, consumed = resumed.resumed_from
    before = parent.heard(consumed)
    after = b"".join(pcm for _, pcm, _ in resumed.audio)
    for overlap in range(min(len(before), len(after)) // 2 * 2, -1, -2):
        if before[len(before) - overlap :] == after[:overlap]:
            return before + after[overlap:], overlap
    raise AssertionError("unreachable: an empty overlap always matches")


async def test_go_away_hands_over_without_losing_uplink_audio(gemini_bridge: Any) -> None:
    """goAway while the user speaks, over an uplink 100 ms slow: each handle lacks the audio
    still on its way, and that audio dies with the old socket. The replay must cover it, with
    no more repeat than the documented overlap."""
    overlap_ms = 500
    bridge, emulator = await gemini_bridge(
        bridge_settings={"gemini_resume_overlap_ms": overlap_ms},
        reply="tone",
        tone_seconds=0.5,
        go_away_after_s=1.0,
        go_away_time_left_s=1.0,
        uplink_delay_s=0.1,
    )
    client = await connected(bridge)
    try:
        client.mic.say(440, 3.0)  # one long utterance across the handover
        client.mic.pause(1.0)
        _, _usage = await client.wait_event("usage", timeout=15)
        assert len(emulator.sessions) == 2
        first, second = emulator.sessions
        assert second.resumed_from is not None and second.resumed_from[0] is first
        assert set(second.setup["sessionResumption"]) == {"handle"}
        audio, overlap = stitched(second)
        span_s, snr = tone_continuity(np.frombuffer(audio, dtype="<i2"), 16000)
        print(
            f"\ngoAway handover: {overlap / 32:.0f} ms replayed twice (overlap), the resumed "
            f"session heard a {span_s:.3f} s tone, SNR {snr:.1f} dB"
        )
        assert 0 < overlap / 32 <= overlap_ms
        assert 2.97 <= span_s <= 3.03, "uplink audio was lost or repeated across the handover"
        assert snr > 30, "the tone is not continuous across the two connections"
        assert second.turns == 1  # and the call went on: the reply came from the new socket
        (described,) = await bridge.sessions()
        assert described["provider_stats"]["resumes"] == 1
        assert "close" not in client.event_types()
    finally:
        await client.close()


async def test_a_typed_message_before_a_session_update_is_answered_once(
    gemini_bridge: Any,
) -> None:
    """The voice change needs a new setup (a resumption). The bridge must wait for the handle
    that covers the finished turn (here 300 ms after it) instead of resuming from the one
    before it, which would replay the text and have it answered twice."""
    bridge, emulator = await gemini_bridge(
        reply="tone", tone_seconds=0.5, handle_after_turn_s=0.3, resumption_interval_s=5
    )
    client = await connected(bridge)
    try:
        client.channel.send('{"type": "text", "text": "hello"}')
        client.channel.send('{"type": "session.update", "session": {"voice": "Kore"}}')
        await client.wait_event("turnComplete", timeout=10)
        await wait_until(lambda: asyncio.sleep(0, len(emulator.sessions) >= 2), timeout=10)
        first, second = emulator.sessions[:2]
        voice = second.setup["generationConfig"]["speechConfig"]["voiceConfig"]
        assert voice["prebuiltVoiceConfig"]["voiceName"] == "Kore"
        (asked,) = [(i, t) for i, t in first.replies if t == "hello"]
        assert second.resumed_from is not None
        assert second.resumed_from[1] >= asked[0], "resumed from a handle older than the turn"
        await asyncio.sleep(0.5)
        answered = [t for rec in emulator.sessions for _, t in rec.replies if t == "hello"]
        assert answered == ["hello"]
        (described,) = await bridge.sessions()
        assert described["provider_stats"]["dropped_turns"] == 0
        assert "error" not in client.event_types()
    finally:
        await client.close()


async def test_a_1011_drop_resumes_the_session(gemini_bridge: Any) -> None:
    bridge, emulator = await gemini_bridge(reply="tone", tone_seconds=0.4, close_1011_after_s=0.5)
    client = await connected(bridge)
    try:
        await wait_until(lambda: asyncio.sleep(0, len(emulator.sessions) >= 2), timeout=10)
        client.mic.say(440, 0.6)
        await client.wait_event("turnComplete", timeout=10)
        assert emulator.sessions[1].resumed_from is not None
        assert "error" not in client.event_types()
    finally:
        await client.close()


async def test_a_rejected_resume_ends_the_session_clearly(gemini_bridge: Any) -> None:
    bridge, _emulator = await gemini_bridge(go_away_after_s=0.5, reject_resume=True)
    client = await connected(bridge)
    try:
        error = await assert_ended_by_provider(bridge, client, "resume_rejected")
        assert "resume" in error["message"]
    finally:
        await client.close()


async def test_close_codes_become_clear_errors(gemini_bridge: Any) -> None:
    bridge, _ = await gemini_bridge(quota_close_after_s=0.3)
    client = await connected(bridge)
    try:
        _, error = await client.wait_event("error", timeout=10)
        assert error["error"]["code"] == "quota_exceeded"
        assert "RESOURCE_EXHAUSTED" in error["error"]["message"]
        await client.wait_event("close", timeout=5)
    finally:
        await client.close()
    bridge, _ = await gemini_bridge(api_keys=("the-right-key",))
    client = ClientPeer()
    await client.connect(bridge.http, bridge.url)
    try:
        _, error = await client.wait_event("error", timeout=10)
        assert error["error"]["code"] == "invalid_api_key"
        assert "API key not valid" in error["error"]["message"]
    finally:
        await client.close()


async def typed_turn(client: ClientPeer, text: str = "hello") -> str:
    """Send a typed message and return the text the assistant answered with."""
    client.channel.send(json.dumps({"type": "text", "text": text}))
    await client.wait_event("turnComplete", timeout=10)
    return "".join(e["delta"] for _, e in client.events if e["type"] == "text")


async def test_text_from_an_audio_only_model(gemini_bridge: Any) -> None:
    """3.8 Live answers only in AUDIO: a client that wants text gets the transcript as text
    events (and no audio), never a setup the server refuses."""
    bridge, emulator = await gemini_bridge(reply="tone", tone_seconds=0.4, reply_text="Two words")
    client = await connected(bridge, session={"output_modalities": ["text"]})
    try:
        assert (await typed_turn(client)).split() == ["Two", "words"]
        (rec,) = emulator.sessions
        assert rec.setup["generationConfig"]["responseModalities"] == ["AUDIO"]
        content = [m["clientContent"] for m in rec.received if "clientContent" in m]
        assert content == [
            {"turns": [{"role": "user", "parts": [{"text": "hello"}]}], "turnComplete": True}
        ]
        await asyncio.sleep(0.3)
        assert not client.heard.loud_frames(), "text was asked for, audio was played"
    finally:
        await client.close()


async def test_text_from_a_half_cascade_model(gemini_bridge: Any) -> None:
    bridge, emulator = await gemini_bridge(reply="text", reply_text="Two words")
    client = await connected(
        bridge, model="gemini-live-2.5-flash-preview", session={"output_modalities": ["text"]}
    )
    try:
        assert (await typed_turn(client)).split() == ["Two", "words"]
        (rec,) = emulator.sessions
        assert rec.setup["generationConfig"]["responseModalities"] == ["TEXT"]
    finally:
        await client.close()
