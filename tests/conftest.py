from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, settings

from bridge import Settings, create_app
from bridge.server.keys import REGISTRY
from bridge.server.registry import SessionRegistry
from tests.sdk_types import (
    check_gemini_client_message,
    check_gemini_server_message,
    check_openai_client_event,
    check_openai_server_event,
    check_wire,
)

# Property-based tests: a few hundred examples per path in ./test (the same ones every run, so a
# failure reproduces); `--hypothesis-profile=long` explores thousands of new ones.
_FUZZ = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
}
settings.register_profile("ci", max_examples=200, derandomize=True, **_FUZZ)
settings.register_profile("long", max_examples=3000, print_blob=True, **_FUZZ)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))  # --hypothesis-profile wins

# Every peer in the tests, bridge and clients alike, uses loopback only.
LOOPBACK = ("127.0.0.1",)


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


@pytest.fixture
async def start_bridge() -> AsyncIterator[Callable[..., Any]]:
    started: list[tuple[TestServer, aiohttp.ClientSession]] = []

    async def start(**overrides: Any) -> Bridge:
        server = TestServer(create_app(make_settings(**overrides)), host="127.0.0.1")
        await server.start_server()
        http = aiohttp.ClientSession()
        started.append((server, http))
        return Bridge(server, http)

    yield start
    for server, http in started:
        await http.close()
        await server.close()


@pytest.fixture
async def bridge(start_bridge: Callable[..., Any]) -> Bridge:
    return await start_bridge()  # type: ignore[no-any-return]


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


@pytest.fixture
async def start_openai_emulator() -> AsyncIterator[Callable[..., Any]]:
    """Start OpenAI emulators; afterwards every server event they sent is judged by the SDK
    (and every client event too, for the ones :func:`openai_bridge` pointed the bridge at)."""
    from bridge.emulators.openai import OpenAIEmulator, OpenAIEmulatorOptions

    started: list[OpenAIEmulator] = []

    async def start(**options: Any) -> OpenAIEmulator:
        emulator = OpenAIEmulator(OpenAIEmulatorOptions(**options))
        await emulator.start()
        started.append(emulator)
        return emulator

    yield start
    for emulator in started:
        await emulator.stop()
    for emulator in started:
        judge_openai(emulator, clients=getattr(emulator, "bridge_is_client", False))


OPENAI_TEST_KEY = "sk-test-0123456789abcdef"


@pytest.fixture
async def openai_bridge(
    start_bridge: Callable[..., Any], start_openai_emulator: Callable[..., Any]
) -> Callable[..., Any]:
    """Start an emulator with the given options and a bridge pointed at it."""

    async def start(bridge_settings: dict[str, Any] | None = None, **options: Any) -> Any:
        emulator = await start_openai_emulator(**options)
        emulator.bridge_is_client = True
        bridge = await start_bridge(
            provider="openai",
            openai_url=emulator.url,
            openai_api_key=OPENAI_TEST_KEY,
            **(bridge_settings or {}),
        )
        return bridge, emulator

    return start


GEMINI_TEST_KEY = "AIza-test-0123456789"


@pytest.fixture
async def gemini_bridge(start_bridge: Callable[..., Any]) -> AsyncIterator[Callable[..., Any]]:
    """Start a Gemini emulator with the given options and a bridge pointed at it."""
    from bridge.emulators.gemini import GeminiEmulator, GeminiEmulatorOptions

    started: list[GeminiEmulator] = []

    async def start(bridge_settings: dict[str, Any] | None = None, **options: Any) -> Any:
        emulator = GeminiEmulator(GeminiEmulatorOptions(**options))
        await emulator.start()
        started.append(emulator)
        bridge = await start_bridge(
            provider="gemini",
            gemini_url=emulator.url,
            gemini_api_key=GEMINI_TEST_KEY,
            **(bridge_settings or {}),
        )
        return bridge, emulator

    yield start
    for emulator in started:
        await emulator.stop()
    for emulator in started:
        judge_gemini(emulator, clients=True)
