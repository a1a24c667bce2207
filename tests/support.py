"""What many tests share: a bridge on a real loopback socket, waiting helpers, audio checks,
and the SDK judges applied to emulator wire logs. (Fixtures are in ``conftest.py``; the aiortc
client peer is ``peer.py``; the SDK type checks are ``sdk_types.py``.)"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from aiohttp import web
from aiohttp.test_utils import TestServer

from bridge.server.config import Settings
from bridge.server.keys import REGISTRY
from bridge.server.registry import SessionRegistry
from tests.peer import ClientPeer, rms
from tests.sdk_types import (
    check_gemini_client_message,
    check_gemini_server_message,
    check_openai_client_event,
    check_openai_server_event,
    check_wire,
)

LOOPBACK = ("127.0.0.1",)


OPENAI_TEST_KEY = "sk-test-0123456789abcdef"


GEMINI_TEST_KEY = "AIza-test-0123456789"


def make_settings(**overrides: Any) -> Settings:
    return Settings(ice_addresses=LOOPBACK, **overrides)


class Bridge:
    """A bridge app served on a real 127.0.0.1 socket, plus an HTTP client for it."""

    def __init__(self, server: TestServer, http: aiohttp.ClientSession) -> None:
        self.server = server
        self.http = http
        self.url = str(server.make_url("")).rstrip("/")

    @property
    def app(self) -> web.Application:
        return self.server.app  # type: ignore[return-value]

    @property
    def registry(self) -> SessionRegistry:
        return self.app[REGISTRY]

    async def sessions(self) -> list[dict[str, Any]]:
        async with self.http.get(f"{self.url}/sessions") as r:
            return (await r.json())["sessions"]  # type: ignore[no-any-return]


def judge_openai(emulator: Any, clients: bool) -> None:
    """Every message the emulator sent (and, when the bridge was its client, every message it
    received) must be what the official ``openai`` SDK declares."""
    for session in emulator.sessions:
        check_wire(
            session.wire,
            check_openai_server_event,
            check_openai_client_event if clients else None,
        )


def judge_gemini(emulator: Any, clients: bool) -> None:
    """The same with google-genai's types and Developer-API converters."""
    for session in emulator.sessions:
        check_wire(
            session.wire,
            check_gemini_server_message,
            check_gemini_client_message if clients else None,
        )


async def wait_until(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def our_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("session-")]


def other_tasks() -> list[Any]:
    """Every task but aiohttp's per-connection HTTP handlers (keep-alive is not a leak)."""
    return [
        t.get_coro()
        for t in asyncio.all_tasks()
        if getattr(t.get_coro(), "__qualname__", "") != "RequestHandler.start"
    ]


async def assert_ended_by_provider(bridge: Any, client: ClientPeer, code: str) -> dict[str, Any]:
    """The client got an ``error`` with ``code`` and a close; nothing of the call is left."""
    _, error = await client.wait_event("error", timeout=10)
    assert error["error"]["code"] == code, error
    _, close = await client.wait_event("close", timeout=5)
    assert close["reason"] == "provider_error"
    await wait_until(lambda: asyncio.sleep(0, not list(bridge.registry)), timeout=5)
    assert await bridge.sessions() == []
    assert our_tasks() == []
    return dict(error["error"])


async def wait_heard(client: ClientPeer, seconds: float, after: float) -> np.ndarray:
    """Wait until ``seconds`` of loud reply audio arrived after loop time ``after``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while loop.time() < deadline:
        loud = [s for t, s in client.heard.frames if t > after and rms(s) > 500]
        if loud and sum(s.size for s in loud) >= seconds * client.heard.rate:
            return np.concatenate(loud)
        await asyncio.sleep(0.05)
    raise AssertionError("the reply was not heard")


def snr_db(reference: np.ndarray, test: np.ndarray) -> float:
    n = min(reference.size, test.size)
    ref = reference[:n].astype(np.float64)
    err = ref - test[:n].astype(np.float64)
    noise = float(np.sum(err**2))
    return float("inf") if noise == 0 else 10 * np.log10(float(np.sum(ref**2)) / noise)


def snr_vs_ideal_tone(samples: np.ndarray, rate: int, freq: float = 440.0) -> float:
    """SNR of ``samples`` against the best-fitting pure sine (any phase and amplitude)."""
    t = np.arange(samples.size) / rate
    basis = np.stack([np.sin(2 * np.pi * freq * t), np.cos(2 * np.pi * freq * t)], axis=1)
    coef, *_ = np.linalg.lstsq(basis, samples.astype(np.float64), rcond=None)
    return snr_db(basis @ coef, samples)


class TwoWorkers:
    """``bridge serve --workers 2`` (echo) with gateway calls on both workers, the kernel
    spreading the connections; :meth:`close_calls` hangs them up, leaving the service up."""

    def __init__(self, folder: Path, port: int) -> None:
        self.folder, self.base = folder, f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "BRIDGE_PORT": str(port),
            "BRIDGE_WORKERS": "2",
            "BRIDGE_RUNTIME_DIR": str(folder),
            "BRIDGE_PROVIDER": "echo",
        }
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.proc = subprocess.Popen([sys.executable, "-m", "bridge", "serve"], env=env)
        self.ids: list[str] = []
        self._sockets: list[aiohttp.ClientWebSocketResponse] = []
        self._sessions: list[aiohttp.ClientSession] = []

    async def call_both(self, at_least: int) -> list[str]:
        """Open gateway calls until both workers hold some (and ``at_least`` in all)."""
        for _ in range(200):
            if len(list(self.folder.glob("worker-*.sock"))) == 2:
                break
            await asyncio.sleep(0.05)
        for _ in range(40):
            http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))
            self._sessions.append(http)
            ws = await http.ws_connect(f"{self.base}/realtime")
            self._sockets.append(ws)
            await ws.send_json({"type": "bridge.stats"})
            while (message := await asyncio.wait_for(ws.receive_json(), 10))["event"] != "stats":
                pass
            self.ids.append(message["data"]["id"])
            if len(self.ids) >= at_least and {i.split("-")[0] for i in self.ids} == {"0", "1"}:
                break
        assert {i.split("-")[0] for i in self.ids} == {"0", "1"}, self.ids
        return self.ids

    async def close_calls(self) -> None:
        for ws in self._sockets:
            await ws.close()
        for http in self._sessions:
            await http.close()

    async def stop(self) -> int:
        """Close the calls, stop the service with SIGINT; its exit code."""
        await self.close_calls()
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout=30)
