from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, settings

from bridge import create_app
from tests.support import (
    GEMINI_TEST_KEY,
    OPENAI_TEST_KEY,
    Bridge,
    judge_gemini,
    judge_openai,
    make_settings,
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


@pytest.fixture
def run_emulator_process() -> Any:
    """Start ``bridge emulate <provider> [args]`` as its own process; returns its URL."""
    import subprocess
    import sys

    started: list[subprocess.Popen[str]] = []

    def start(provider: str, *args: str) -> str:
        # `python -m bridge`: a `bridge` on PATH may be iproute2's.
        process = subprocess.Popen(
            [sys.executable, "-m", "bridge", "emulate", provider, "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        started.append(process)
        assert process.stdout is not None
        line = process.stdout.readline()
        assert " on " in line, f"the emulator did not start: {line!r}"
        return line.split(" on ", 1)[1].split(";", 1)[0].strip()

    yield start
    for process in started:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
async def start_gpt_live() -> AsyncIterator[Callable[..., Any]]:
    """Start GPT-Live emulators; afterwards every message they sent is judged by the SDK's
    ``openai.types.live`` (and every message they received, unless the test sent invalid
    ones on purpose)."""
    from bridge.emulators.gpt_live import GptLiveEmulator, GptLiveEmulatorOptions
    from tests.gpt_live_types import judge_gpt_live

    started: list[tuple[GptLiveEmulator, bool]] = []

    async def start(judge_clients: bool = True, **options: Any) -> GptLiveEmulator:
        emulator = GptLiveEmulator(GptLiveEmulatorOptions(**options))
        await emulator.start()
        started.append((emulator, judge_clients))
        return emulator

    yield start
    for emulator, _ in started:
        await emulator.stop()
    for emulator, clients in started:
        judge_gpt_live(emulator, clients=clients)
