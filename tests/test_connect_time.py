"""From pressing "call" to hearing the reply, stage by stage: offer → answer → ICE → DTLS →
events channel → provider open → ``open`` at the peer → first reply audio, on loopback against
the OpenAI emulator. The provider socket opens while ICE and DTLS run, so ``open`` reaches the
peer about when its media can flow. Prints p50/p99 per stage (goal: offer → ``open`` at the
peer ≤ 150 ms; the assertion's margin only catches a broken overlap)."""

from __future__ import annotations

import asyncio
import statistics
from typing import Any

from tests.peer import ClientPeer

CALLS = 8
STAGES = ("answer", "ice", "dtls", "channel", "provider_open", "open_delivered", "first_audio")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def test_connect_stages_and_the_overlapped_provider(openai_bridge: Any) -> None:
    bridge, _emulator = await openai_bridge(
        reply="tone", tone_seconds=0.3, bridge_settings={"max_sessions_per_ip": 0}
    )
    loop = asyncio.get_running_loop()
    at_peer: list[float] = []
    stages: dict[str, list[float]] = {name: [] for name in STAGES}
    for _ in range(CALLS):
        client = ClientPeer()
        try:
            offer_at = loop.time()
            await client.connect(bridge.http, bridge.url)
            opened_at, _ = await client.wait_event("open")
            at_peer.append((opened_at - offer_at) * 1000)
            client.mic.say(440, 0.6)
            client.mic.pause(0.8)
            await client.wait_event("turnComplete")
            async with bridge.http.get(f"{bridge.url}/sessions/{client.session_id}") as r:
                connect = (await r.json())["connect_ms"]
            for name in STAGES:
                if name in connect:
                    stages[name].append(connect[name])
        finally:
            await client.close()
    lines = [f"  offer -> open at the peer: p50 {statistics.median(at_peer):.0f} ms, "
             f"p99 {percentile(at_peer, 0.99):.0f} ms"]  # fmt: skip
    for name, values in stages.items():
        if values:
            lines.append(
                f"  {name:>15}: p50 {statistics.median(values):6.1f} ms, "
                f"p99 {percentile(values, 0.99):6.1f} ms"
            )
    print(
        f"\nconnect stages over {CALLS} calls (bridge clock, from the offer):\n" + "\n".join(lines)
    )
    # Every stage was reached, in order, on every call (first_audio needs the user's turn).
    for name in STAGES[:-1]:
        assert len(stages[name]) == CALLS, (name, stages)
    assert statistics.median(stages["answer"]) < statistics.median(stages["dtls"])
    # The provider opened while ICE/DTLS ran: it is not a stage after them.
    overlap = [p - d for p, d in zip(stages["provider_open"], stages["dtls"], strict=True)]
    assert statistics.median(overlap) < 100, overlap
    assert statistics.median(at_peer) <= 450, at_peer  # goal 150 ms
