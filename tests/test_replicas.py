"""Two bridge replicas sharing one real ``redis-server`` (started here, on 127.0.0.1): a call
started on one is listed by and ended through the other, and a token's concurrency limit
holds across both."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from bridge.server.app import create_app
from bridge.server.auth import mint
from tests.support import make_settings, wait_until

SECRET = "replica-secret-0123456789abcdef012345"
REDIS = shutil.which("redis-server")
pytestmark = pytest.mark.skipif(REDIS is None, reason="redis-server is not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def redis_url(tmp_path: Path) -> AsyncIterator[str]:
    assert REDIS is not None
    port = free_port()
    proc = subprocess.Popen(
        [REDIS, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        for _ in range(200):
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            except OSError:
                await asyncio.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
async def replicas(redis_url: str) -> AsyncIterator[list[str]]:
    servers = []
    for _ in range(2):
        port = free_port()
        settings = make_settings(
            port=port,
            redis_url=redis_url,
            advertise_url=f"http://127.0.0.1:{port}",
            auth_secret=SECRET,
        )
        server = TestServer(create_app(settings), host="127.0.0.1", port=port)
        await server.start_server()
        servers.append(server)
    yield [str(s.make_url("")).rstrip("/") for s in servers]
    for server in servers:
        await server.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def session_ids(http: aiohttp.ClientSession, url: str, token: str) -> list[str]:
    async with http.get(f"{url}/sessions", headers=bearer(token)) as r:
        assert r.status == 200, await r.text()
        return [s["id"] for s in (await r.json())["sessions"]]


async def stats_id(ws: aiohttp.ClientWebSocketResponse) -> str:
    await ws.send_json({"type": "bridge.stats"})
    while (message := await asyncio.wait_for(ws.receive_json(), 10))["event"] != "stats":
        pass
    return str(message["data"]["id"])


async def test_a_call_on_one_replica_is_listed_and_ended_through_the_other(
    replicas: list[str],
) -> None:
    a, b = replicas
    alice = mint(SECRET, 120, subject="alice")
    admin = mint(SECRET, 120, admin=True)
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"{a}/realtime?model=echo&token={alice}")
        session_id = await stats_id(ws)

        async def listed_by_b() -> bool:
            return session_id in await session_ids(http, b, alice)

        await wait_until(listed_by_b)
        assert await session_ids(http, b, admin) == [session_id]
        assert await session_ids(http, b, mint(SECRET, 60, subject="bob")) == []
        async with http.get(f"{b}/sessions/{session_id}", headers=bearer(alice)) as r:
            assert r.status == 200 and (await r.json())["owner"] == "alice"
        bob = mint(SECRET, 60, subject="bob")
        async with http.delete(f"{b}/sessions/{session_id}", headers=bearer(bob)) as r:
            assert r.status == 403  # forwarded with bob's token: not his call
        async with http.delete(f"{b}/sessions/{session_id}", headers=bearer(alice)) as r:
            assert r.status == 200, await r.text()
        message = await ws.receive(timeout=10)
        while message.type == aiohttp.WSMsgType.TEXT:
            message = await ws.receive(timeout=10)
        assert ws.close_code is not None

        async def gone() -> bool:
            return await session_ids(http, a, admin) == [] == await session_ids(http, b, admin)

        await wait_until(gone)
        await ws.close()


async def test_a_token_limit_holds_across_replicas(replicas: list[str]) -> None:
    a, b = replicas
    carol = mint(SECRET, 120, subject="carol", max_sessions=1)
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"{a}/realtime?model=echo&token={carol}")
        session_id = await stats_id(ws)

        async def recorded() -> bool:
            return session_id in await session_ids(http, b, carol)

        await wait_until(recorded)
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(f"{b}/realtime?model=echo&token={carol}")
        assert refused.value.status == 429
        await ws.close()
        dave = mint(SECRET, 120, subject="dave", max_sessions=1)  # another token is not held
        other = await http.ws_connect(f"{b}/realtime?model=echo&token={dave}")
        await stats_id(other)
        await other.close()
