"""``bridge serve --workers 2``: one port, two processes, every session reachable from either."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp

from tests.peer import ClientPeer
from tests.support import TwoWorkers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def fresh(method: str, url: str, unix: str | None = None) -> tuple[int, Any]:
    """One request on a new connection (so the kernel may pick either worker)."""
    connector = aiohttp.UnixConnector(path=unix) if unix else aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as http, http.request(method, url) as r:
        return r.status, await r.json()


async def test_two_workers_share_the_port_and_route_by_session(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "BRIDGE_PORT": str(port),
        "BRIDGE_ICE_ADDRESSES": "127.0.0.1",
        "BRIDGE_WORKERS": "2",
        "BRIDGE_RUNTIME_DIR": str(tmp_path),
    }
    proc = subprocess.Popen([sys.executable, "-m", "bridge", "serve"], env=env)
    base = f"http://127.0.0.1:{port}"
    clients: list[ClientPeer] = []
    try:
        for _ in range(200):
            sockets = sorted(tmp_path.glob("worker-*.sock"))
            if len(sockets) == 2:
                break
            await asyncio.sleep(0.05)
        assert [s.name for s in sockets] == ["worker-0.sock", "worker-1.sock"]
        for _ in range(6):
            client = ClientPeer()
            async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(force_close=True)
            ) as http:
                await client.connect(http, base)
            clients.append(client)
        ids = [c.session_id or "" for c in clients]
        assert all(i.split("-")[0] in ("0", "1") for i in ids)
        status, listed = await fresh("GET", f"{base}/sessions")
        assert sorted(s["id"] for s in listed["sessions"]) == sorted(ids)

        # Ask each worker's private socket about a session it does not own: it forwards.
        target = ids[0]
        owner = int(target.split("-")[0])
        other = str(sockets[1 - owner])
        status, body = await fresh("GET", f"http://worker/sessions/{target}", unix=other)
        assert status == 200 and body["id"] == target
        status, body = await fresh("DELETE", f"http://worker/whip/{target}", unix=other)
        assert status == 200
        status, body = await fresh("GET", f"http://worker/sessions/{target}", unix=other)
        assert status == 404 and body["error"]["code"] == "not_found"

        for session_id in ids[1:]:
            status, _ = await fresh("DELETE", f"{base}/sessions/{session_id}")
            assert status == 200
        status, listed = await fresh("GET", f"{base}/sessions")
        assert listed == {"sessions": []}
        status, stats = await fresh("GET", f"{base}/stats")
        assert sorted(w["pid"] for w in stats["workers"]) != [] and len(stats["workers"]) == 2
    finally:
        for client in clients:
            await client.close()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    assert proc.returncode == 0
    assert list(tmp_path.glob("worker-*.sock")) == []


async def test_workers_do_not_outlive_a_killed_parent(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "BRIDGE_PORT": str(free_port()),
        "BRIDGE_WORKERS": "2",
        "BRIDGE_RUNTIME_DIR": str(tmp_path),
    }
    proc = subprocess.Popen([sys.executable, "-m", "bridge", "serve"], env=env)
    try:
        for _ in range(200):
            if len(list(tmp_path.glob("worker-*.sock"))) == 2:
                break
            await asyncio.sleep(0.05)
        children = [
            int(pid)
            for pid in subprocess.run(
                ["pgrep", "-P", str(proc.pid)], capture_output=True, text=True
            ).stdout.split()
        ]
        assert len(children) == 2
        proc.kill()
        proc.wait()
        for _ in range(200):
            alive = [pid for pid in children if _alive(pid)]
            if not alive:
                break
            await asyncio.sleep(0.05)
        assert alive == [], "workers kept serving after the parent died"
    finally:
        proc.kill()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


async def test_sessions_and_healthz_count_every_workers_calls(tmp_path: Path) -> None:
    """Gateway calls land on either worker; any worker lists and counts all of them."""
    service = TwoWorkers(tmp_path, free_port())
    base = service.base
    try:
        ids = await service.call_both(at_least=4)
        for _ in range(4):  # ask both workers, whichever the kernel picks
            status, listed = await fresh("GET", f"{base}/sessions")
            assert status == 200
            assert sorted(s["id"] for s in listed["sessions"]) == sorted(ids)
            assert {s["transport"] for s in listed["sessions"]} == {"gateway"}
            status, health = await fresh("GET", f"{base}/healthz")
            assert status == 200
            assert health == {
                "status": "ok",
                "sessions": len(ids),
                "workers": 2,
                "workers_answering": 2,
            }
        await service.close_calls()
        for _ in range(100):
            _, health = await fresh("GET", f"{base}/healthz")
            if health["sessions"] == 0:
                break
            await asyncio.sleep(0.05)
        assert health["sessions"] == 0
    finally:
        code = await service.stop()
    assert code == 0
