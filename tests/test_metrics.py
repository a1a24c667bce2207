"""``GET /metrics``: Prometheus text that real calls move, per app in one process, and the
whole service's from any worker of ``bridge serve --workers 2``."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tests.peer import ClientPeer, connected
from tests.support import OPENAI_TEST_KEY, Bridge, TwoWorkers, wait_until
from tests.test_workers import free_port

Samples = list[tuple[str, dict[str, str], float]]


def parse(text: str) -> Samples:
    """Every sample of a Prometheus text exposition (the official parser: it must parse)."""
    return [
        (s.name, dict(s.labels), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    return sum(
        value
        for sample, have, value in samples
        if sample == name and all(have.get(k) == v for k, v in labels.items())
    )


async def scrape(http: aiohttp.ClientSession, url: str) -> tuple[str, Samples]:
    async with http.get(f"{url}/metrics") as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await r.text()
    return text, parse(text)


async def scraped(bridge: Bridge) -> Samples:
    return (await scrape(bridge.http, bridge.url))[1]


async def test_an_echo_call_moves_the_counters(start_bridge: Any) -> None:
    bridge = await start_bridge()
    other = await start_bridge()  # another app in this process: it must see none of it
    call = {"transport": "webrtc", "provider": "echo"}
    before = await scraped(bridge)
    assert total(before, "rtcbridge_sessions_total") == 0
    client = await connected(bridge)
    try:
        now = await scraped(bridge)
        assert total(now, "rtcbridge_sessions_active", **call) == 1
        assert total(now, "rtcbridge_sessions_total", **call) == 1
        assert total(now, "rtcbridge_provider_connect_seconds_count", provider="echo") == 1
        client.mic.say(440, 0.8)
        client.mic.pause(0.8)
        await client.wait_event("usage", timeout=10)
        now = await scraped(bridge)
        assert total(now, "rtcbridge_turn_latency_seconds_count", **call) == 1
        assert total(now, "rtcbridge_turn_latency_seconds_sum", **call) < 5
        async with bridge.http.delete(f"{bridge.url}/sessions/{client.session_id}") as r:
            assert r.status == 200
        await wait_until(lambda: asyncio.sleep(0, not list(bridge.registry)))
    finally:
        await client.close()
    after = await scraped(bridge)
    assert total(after, "rtcbridge_sessions_active", **call) == 0
    assert total(after, "rtcbridge_sessions_total", **call) == 1
    assert total(after, "rtcbridge_sessions_closed_total", **call, reason="deleted") == 1
    assert total(after, "rtcbridge_audio_in_seconds_total", **call) >= 1.0  # 0.8 s + pauses
    assert 0.5 <= total(after, "rtcbridge_audio_out_seconds_total", **call) <= 1.5
    assert total(after, "rtcbridge_errors_total") == 0
    assert total(await scraped(other), "rtcbridge_sessions_total") == 0


async def test_provider_errors_and_spending_are_counted(openai_bridge: Any) -> None:
    bridge, _ = await openai_bridge(invalid_key=True)
    client = ClientPeer()  # the call is accepted; its provider refuses the key right after
    await client.connect(bridge.http, bridge.url)
    try:
        await client.wait_event("close", timeout=10)
        await wait_until(lambda: asyncio.sleep(0, not list(bridge.registry)))
    finally:
        await client.close()
    text, samples = await scrape(bridge.http, bridge.url)
    assert total(samples, "rtcbridge_errors_total", provider="openai", code="invalid_api_key") == 1
    assert total(samples, "rtcbridge_sessions_closed_total", reason="provider_error") == 1
    assert total(samples, "rtcbridge_sessions_active") == 0
    assert OPENAI_TEST_KEY not in text and "sk-" not in text

    bridge, _ = await openai_bridge(reply="tone", tone_seconds=0.3)
    client = await connected(bridge)
    try:
        client.mic.say(440, 0.6)
        client.mic.pause(0.8)
        _, usage = await client.wait_event("usage", timeout=15)
    finally:
        await client.close()
    samples = await scraped(bridge)
    assert usage["cost_usd"] > 0
    spent = [(labels, v) for name, labels, v in samples if name == "rtcbridge_cost_usd_total"]
    assert [labels["provider"] for labels, _ in spent] == ["openai"]
    assert abs(spent[0][1] - usage["cost_usd"]) < 1e-9
    call = {"transport": "webrtc", "provider": "openai"}
    assert total(samples, "rtcbridge_turn_latency_seconds_count", **call) == 1
    assert total(samples, "rtcbridge_provider_connect_seconds_count", provider="openai") == 1


async def test_any_worker_shows_every_workers_sessions(tmp_path: Path) -> None:
    service = TwoWorkers(tmp_path, free_port())
    base = service.base
    gateway = {"transport": "gateway", "provider": "echo"}
    try:
        ids = await service.call_both(at_least=3)
        assert any((tmp_path / "metrics").glob("*.db"))
        for worker in sorted(tmp_path.glob("worker-*.sock")):  # each worker, by its own socket
            connector = aiohttp.UnixConnector(path=str(worker))
            async with aiohttp.ClientSession(connector=connector) as http:
                text, samples = await scrape(http, "http://worker")
            assert total(samples, "rtcbridge_sessions_active", **gateway) == len(ids), text
            assert total(samples, "rtcbridge_sessions_active") == len(ids)
            assert total(samples, "rtcbridge_sessions_total", **gateway) == len(ids)
            connects = total(samples, "rtcbridge_provider_connect_seconds_count", provider="echo")
            assert connects == len(ids)
        await service.close_calls()
        for _ in range(100):
            async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(force_close=True)
            ) as http:
                _, samples = await scrape(http, base)
            if total(samples, "rtcbridge_sessions_active") == 0:
                break
            await asyncio.sleep(0.05)
        assert total(samples, "rtcbridge_sessions_active") == 0
        assert total(samples, "rtcbridge_sessions_total", **gateway) == len(ids)
        assert total(samples, "rtcbridge_sessions_closed_total", **gateway) == len(ids)
    finally:
        code = await service.stop()
    assert code == 0
    assert not (tmp_path / "metrics").exists()
