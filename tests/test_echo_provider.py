"""The echo provider on its own: VAD turns, the replayed utterance, usage."""

from __future__ import annotations

import asyncio

import numpy as np

from bridge.audio.vad import EnergyVad, VadEvent, level_dbfs
from bridge.core import events as ev
from bridge.core.pricing import price
from bridge.core.session_config import SessionConfig
from bridge.providers.echo import EchoOptions, EchoProvider
from tests.peer import tone

CHUNK = 480  # 20 ms at 24 kHz


def chunks(samples: np.ndarray) -> list[bytes]:
    return [samples[i : i + CHUNK].tobytes() for i in range(0, samples.size, CHUNK)]


async def drain(provider: EchoProvider) -> list[ev.Event]:
    await provider.close()
    return [e async for e in provider.events()]


def test_vad_needs_sustained_speech_and_silence() -> None:
    vad = EnergyVad(24000, start_ms=60, stop_ms=100)
    loud, quiet = tone(440, 0.02, 24000).tobytes(), bytes(960)
    assert [vad.process(loud) for _ in range(3)] == [None, None, VadEvent.START]
    assert [vad.process(quiet) for _ in range(5)] == [None, None, None, None, VadEvent.STOP]
    assert level_dbfs(quiet) == float("-inf")
    assert -14 < level_dbfs(loud) < -12  # a 0.3 full-scale sine is -13.5 dBFS


async def test_an_utterance_is_replayed_after_the_pause() -> None:
    provider = EchoProvider("", SessionConfig(), EchoOptions(silence_ms=300))
    await provider.connect()
    speech = tone(440, 1.0, 24000)
    for chunk in chunks(
        np.concatenate([np.zeros(4800, np.int16), speech, np.zeros(24000, np.int16)])
    ):
        provider.send_audio(chunk)
    events = await drain(provider)
    kinds = [type(e).__name__ for e in events]
    assert kinds[:3] == ["Open", "SpeechStarted", "SpeechStopped"]
    assert kinds[-2:] == ["TurnComplete", "Usage"]
    reply = b"".join(e.pcm for e in events if isinstance(e, ev.AudioOut))
    replayed = np.frombuffer(reply, dtype="<i2")
    # The whole tone comes back (plus up to the 200 ms pre-roll), and only once.
    assert 1.0 <= replayed.size / 24000 <= 1.25
    assert np.count_nonzero(np.abs(replayed) > 1000) > 0.9 * np.count_nonzero(np.abs(speech) > 1000)
    usage = events[-1]
    assert isinstance(usage, ev.Usage) and price("echo", "echo", usage.usage) == 0.0
    assert 1.0 <= usage.usage["input_audio_seconds"] <= 1.25
    transcripts = [e for e in events if isinstance(e, ev.Transcript)]
    assert transcripts[0].role == "user" and "s of speech" in transcripts[0].text


async def test_closed_provider_ignores_input_and_ends_its_events() -> None:
    provider = EchoProvider("", SessionConfig(), EchoOptions())
    await provider.close()
    await provider.close()
    provider.send_audio(tone(440, 0.5, 24000).tobytes())
    assert await asyncio.wait_for(drain(provider), 1) == []


def test_wire_format_of_every_event() -> None:
    assert ev.to_wire(ev.Open()) == {"type": "open"}
    assert ev.to_wire(ev.TextDelta("hi")) == {"type": "text", "delta": "hi"}
    assert ev.to_wire(ev.Transcript("user", "x", True)) == {
        "type": "transcript",
        "role": "user",
        "text": "x",
        "final": True,
    }
    assert ev.to_wire(ev.SpeechStarted()) == {"type": "speechStarted"}
    assert ev.to_wire(ev.SpeechStopped()) == {"type": "speechStopped"}
    assert ev.to_wire(ev.TurnComplete()) == {"type": "turnComplete"}
    assert ev.to_wire(ev.Usage({"a": 1}, None)) == {
        "type": "usage",
        "usage": {"a": 1},
        "cost_usd": None,
    }
    assert ev.to_wire(ev.Error("c", "m")) == {
        "type": "error",
        "error": {"code": "c", "message": "m"},
    }
    assert ev.to_wire(ev.Close("deleted")) == {"type": "close", "reason": "deleted"}
    assert ev.to_wire(ev.AudioOut(b"", 24000, "i")) is None
