"""Barge-in: talking over the echo reply cuts the reply at once."""

from __future__ import annotations

import asyncio

import numpy as np

from tests.peer import ClientPeer, dominant_frequency, rms
from tests.support import Bridge


async def test_talking_over_the_reply_stops_it(bridge: Bridge) -> None:
    client = ClientPeer()
    await client.connect(bridge.http, bridge.url)
    try:
        await client.wait_connected()
        await client.wait_event("open")
        client.mic.say(440, 1.5)
        client.mic.pause(0.1)
        stopped_at, _ = await client.wait_event("speechStopped")
        # Wait until the reply is audibly playing, then talk over it.
        while not [t for t, s in client.heard.loud_frames() if t > stopped_at]:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.4)
        client.mic.say(880, 1.0)
        first = client.event_types().index("speechStarted")
        barge_at, _ = await client.wait_event("speechStarted", after=first + 1)
        await asyncio.sleep(0.6)

        reply = [
            (t, s)
            for t, s in client.heard.frames
            if t > stopped_at and rms(s) > 500 and t < barge_at + 0.5
        ]
        assert reply, "no reply was heard before the barge-in"
        heard_s = sum(s.size for _, s in reply) / client.heard.rate
        assert heard_s < 1.3, f"the 1.5 s reply was not cut ({heard_s:.2f} s heard)"
        assert abs(dominant_frequency(np.concatenate([s for _, s in reply]), 48000) - 440) < 10
        stop_ms = (reply[-1][0] - barge_at) * 1000
        print(f"\nbarge-in: reply stopped {stop_ms:.0f} ms after the client got speechStarted")
        # Goal 100 ms; aiortc's receive jitter buffer alone holds ~80 ms of it.
        assert stop_ms < 300, stop_ms

        # On the bridge: no reply audio left the track after the flush.
        (session,) = list(bridge.registry)
        track = session.transport.track
        assert track.last_flush_at is not None
        assert track.last_audio_sent_at is not None
        assert track.last_audio_sent_at <= track.last_flush_at + 0.001
    finally:
        await client.close()
