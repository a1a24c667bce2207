"""Soak: 200 calls that end in every way a call can end leave the bridge as they found it.

The bridge runs as its own process (``bridge serve``), so its open files, threads, asyncio
tasks and memory are measured apart from the test's clients.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiortc import RTCSessionDescription

from tests.peer import ClientPeer

BRIDGE = Path(sys.executable).parent / "bridge"
CYCLES = 200
CONCURRENCY = 8


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Served:
    """A bridge process and what it holds."""

    def __init__(self, process: asyncio.subprocess.Process, url: str) -> None:
        self.process, self.url = process, url

    def holdings(self) -> dict[str, int]:
        pid = self.process.pid
        status = Path(f"/proc/{pid}/status").read_text()
        rss_kb = next(
            int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS")
        )
        return {
            "fds": len(os.listdir(f"/proc/{pid}/fd")),
            "threads": len(os.listdir(f"/proc/{pid}/task")),
            "rss_kb": rss_kb,
        }


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")},
        "BRIDGE_PORT": str(port),
        "BRIDGE_WORKERS": "1",
        "BRIDGE_ICE_ADDRESSES": "127.0.0.1",
        "BRIDGE_PROVIDER": "echo",
        "BRIDGE_CONNECT_TIMEOUT": "1.0",
        "BRIDGE_INACTIVITY_TIMEOUT": "1.5",
        "BRIDGE_MAX_SESSIONS": "100",
        "BRIDGE_MAX_SESSIONS_PER_IP": "0",  # every caller here is 127.0.0.1
        "BRIDGE_LOG_LEVEL": "warning",
    }
    process = await asyncio.create_subprocess_exec(
        str(BRIDGE), "serve", env=env, stdout=asyncio.subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as http:
        for _ in range(200):
            try:
                async with http.get(f"{url}/healthz") as r:
                    if r.status == 200:
                        break
            except aiohttp.ClientError:
                await asyncio.sleep(0.05)
    yield Served(process, url)
    process.terminate()
    assert await asyncio.wait_for(process.wait(), 15) == 0


async def clean_close(http: aiohttp.ClientSession, url: str) -> None:
    client = ClientPeer()
    await client.connect(http, url)
    await client.wait_connected()
    await client.wait_event("open")
    await client.close()


async def deleted(http: aiohttp.ClientSession, url: str) -> None:
    client = ClientPeer()
    body = await client.connect(http, url)
    await client.wait_event("open")
    async with http.delete(f"{url}/sessions/{body['session_id']}") as r:
        assert r.status == 200
    await client.wait_event("close")
    await client.close()


async def whip_deleted(http: aiohttp.ClientSession, url: str) -> None:
    client = ClientPeer()
    offer = await client.offer()
    headers = {"Content-Type": "application/sdp"}
    async with http.post(f"{url}/whip", data=offer, headers=headers) as r:
        assert r.status == 201
        answer, location = await r.text(), r.headers["Location"]
    await client.pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    await client.wait_connected()
    async with http.delete(f"{url}{location}") as r:
        assert r.status == 200
    await client.close()


async def died(http: aiohttp.ClientSession, url: str) -> None:
    """The client's sockets vanish without a word (a crashed tab, a lost network)."""
    client = ClientPeer()
    await client.connect(http, url)
    await client.wait_event("open")
    for transceiver in client.pc.getTransceivers():
        connection = transceiver.receiver.transport.transport._connection
        for protocol in connection._protocols:
            protocol.transport.close()
    await asyncio.sleep(0.1)
    await client.close()


async def never_connected(http: aiohttp.ClientSession, url: str) -> None:
    """The offer is answered, but the client never even takes the answer."""
    client = ClientPeer()
    sdp = await client.offer()
    async with http.post(f"{url}/offer", json={"sdp": sdp, "type": "offer"}) as r:
        assert r.status == 200
    await client.close()


KINDS: list[Callable[[aiohttp.ClientSession, str], Awaitable[None]]] = [
    clean_close,
    deleted,
    whip_deleted,
    died,
    never_connected,
]


async def run_cycles(url: str, count: int) -> None:
    semaphore = asyncio.Semaphore(CONCURRENCY)
    async with aiohttp.ClientSession() as http:

        async def one(i: int) -> None:
            async with semaphore:
                await asyncio.wait_for(KINDS[i % len(KINDS)](http, url), 20)

        await asyncio.gather(*(one(i) for i in range(count)))


async def settled(served: Served, baseline: dict[str, int]) -> dict[str, Any]:
    """Wait (bounded) for the bridge to drop every session and come back to the baseline."""
    async with aiohttp.ClientSession() as http:
        deadline = time.monotonic() + 40
        while True:
            async with http.get(f"{served.url}/sessions") as r:
                sessions = (await r.json())["sessions"]
            async with http.get(f"{served.url}/stats") as r:
                tasks = (await r.json())["asyncio_tasks"]
            now = {**served.holdings(), "tasks": tasks, "sessions": len(sessions)}
            back = (
                not sessions
                and now["fds"] <= baseline["fds"]
                and now["threads"] <= baseline["threads"]
                and now["tasks"] <= baseline["tasks"]
            )
            if back or time.monotonic() > deadline:
                return now
            await asyncio.sleep(0.5)


async def test_two_hundred_calls_end_every_way_and_leave_nothing(served: Served) -> None:
    await run_cycles(served.url, len(KINDS) * 2)  # warm up: executors, caches, first GC
    baseline = await settled(served, {"fds": 10**6, "threads": 10**6, "tasks": 10**6})
    started = time.monotonic()
    await run_cycles(served.url, CYCLES)
    took = time.monotonic() - started
    after = await settled(served, baseline)
    print(
        f"\nsoak: {CYCLES} calls ({', '.join(k.__name__ for k in KINDS)}) in {took:.1f} s; "
        f"before {baseline}, after {after}; RSS {after['rss_kb'] - baseline['rss_kb']:+d} kB"
    )
    assert after["sessions"] == 0
    assert after["fds"] <= baseline["fds"], (baseline, after)
    assert after["threads"] <= baseline["threads"], (baseline, after)
    assert after["tasks"] <= baseline["tasks"], (baseline, after)
