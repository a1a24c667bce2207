"""End to end over loopback: an aiortc client talks to the bridge's echo provider."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from tests.peer import ClientPeer, dominant_frequency, rms
from tests.support import Bridge

TURN_EVENTS = ["speechStarted", "speechStopped", "turnComplete", "usage"]


def turn_order(types: list[str]) -> list[str]:
    return [t for t in types if t in TURN_EVENTS]


async def one_turn(bridge: Bridge, codecs: tuple[str, ...]) -> ClientPeer:
    client = ClientPeer(codecs=codecs)
    await client.connect(bridge.http, bridge.url)
    await client.wait_connected()
    await client.wait_event("open")
    client.mic.say(440, 1.0)
    client.mic.pause(1.0)
    await client.wait_event("usage", timeout=10)
    # The reply (about 1 s) plays after the turn's events; wait until it has been heard.
    await client.wait_event("speechStopped")
    for _ in range(100):
        loud = client.heard.loud_frames()
        if (
            loud
            and loud[-1][0] - loud[0][0] > 0.8
            and loud[-1][0] < asyncio.get_running_loop().time() - 0.2
        ):
            break
        await asyncio.sleep(0.05)
    return client


@pytest.mark.parametrize("codecs, rate", [(("opus",), 48000), (("PCMU",), 8000)])
async def test_tone_is_echoed_back(bridge: Bridge, codecs: tuple[str, ...], rate: int) -> None:
    client = await one_turn(bridge, codecs)
    try:
        assert client.heard.rate == rate
        loud = client.heard.loud_frames()
        assert loud, "no reply audio was heard"
        reply = np.concatenate([s for _, s in loud])
        duration = reply.size / rate
        assert 0.8 <= duration <= 1.6, duration
        freq = dominant_frequency(reply, rate)
        assert abs(freq - 440) < 10, freq
        assert turn_order(client.event_types()) == TURN_EVENTS
        sessions = await bridge.sessions()
        assert [s["codec"] for s in sessions] == [codecs[0]]
    finally:
        await client.close()


async def test_silence_between_replies_is_silent(bridge: Bridge) -> None:
    """The outbound track plays silence when idle, not noise or stale audio."""
    client = ClientPeer()
    await client.connect(bridge.http, bridge.url)
    await client.wait_connected()
    await asyncio.sleep(0.5)
    try:
        assert len(client.heard.frames) > 10
        assert all(rms(s) < 50 for _, s in client.heard.frames)
    finally:
        await client.close()


async def test_stats_measure_the_audio_path(bridge: Bridge) -> None:
    client = await one_turn(bridge, ("opus",))
    try:
        async with bridge.http.get(f"{bridge.url}/stats") as r:
            stats = await r.json()
        print(
            f"\nstats after one echo turn: uplink {stats['uplink_ms']}, "
            f"downlink {stats['downlink_ms']}"
        )
        assert stats["sessions"] == 1
        assert stats["uplink_ms"]["count"] > 50  # one per decoded inbound frame
        assert stats["downlink_ms"]["count"] >= 1  # the reply reached an idle track
        # Goals are 5 ms up and 25 ms down (see the benchmark); these margins catch breakage.
        assert stats["uplink_ms"]["p99"] < 15
        assert stats["downlink_ms"]["max"] < 75
        assert stats["outbound_frames"] > 50
        assert stats["cpu_seconds"] > 0 and stats["rss_bytes"] > 0
        async with bridge.http.post(f"{bridge.url}/stats/reset") as r:
            assert r.status == 200
        async with bridge.http.get(f"{bridge.url}/stats") as r:
            assert (await r.json())["uplink_ms"]["count"] < 10
    finally:
        await client.close()
