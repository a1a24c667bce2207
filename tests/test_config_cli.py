"""Settings validation, environment variables, and ``bridge serve`` as a real process."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys

import aiohttp
import pytest

from bridge.core.errors import ConfigError
from bridge.server.config import Settings


def test_environment_and_defaults() -> None:
    settings = Settings.from_sources(
        {"BRIDGE_PORT": "9000", "BRIDGE_ICE_SERVERS": "stun:a:3478, stun:b", "OTHER": "x"}
    )
    assert settings.port == 9000
    assert settings.ice_servers == ("stun:a:3478", "stun:b")
    assert settings.default_provider == "echo"


def test_provider_default_follows_the_key_present_and_keys_stay_secret() -> None:
    settings = Settings.from_sources({"OPENAI_API_KEY": "sk-secret-123"})
    assert settings.default_provider == "openai"
    assert "sk-secret" not in repr(settings)
    assert Settings.from_sources({"GOOGLE_API_KEY": "g"}).default_provider == "gemini"
    assert (
        Settings.from_sources({"OPENAI_API_KEY": "k"}, {"provider": "echo"}).default_provider
        == "echo"
    )


@pytest.mark.parametrize(
    "env, message",
    [
        ({"BRIDGE_PORT": "http"}, "BRIDGE_PORT"),
        ({"BRIDGE_PORT": "70000"}, "port"),
        ({"BRIDGE_PROVIDER": "claude"}, "provider"),
        ({"BRIDGE_CONNECT_TIMEOUT": "0"}, "connect_timeout"),
        ({"BRIDGE_ICE_SERVERS": "http://x"}, "ice_servers"),
        ({"BRIDGE_LOG_LEVEL": "loud"}, "log_level"),
    ],
)
def test_bad_settings_fail_with_the_setting_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_sources(env)


def run_bridge(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    full_env.pop("OPENAI_API_KEY", None)
    full_env.update(env or {})
    return subprocess.Popen(
        [sys.executable, "-m", "bridge", *args],
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_bad_flag_value_exits_2_with_a_clear_message() -> None:
    proc = run_bridge("serve", "--port", "nope")
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert "--port" in out and "nope" in out


async def test_serve_runs_the_service_and_stops_cleanly() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = run_bridge("serve", "--ice-addresses", "127.0.0.1", env={"BRIDGE_PORT": str(port)})
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(200):
                try:
                    async with http.get(f"http://127.0.0.1:{port}/healthz") as r:
                        health = await r.json()
                    assert health["sessions"] == 0
                    if health["status"] == "ok":  # "degraded" while a worker still starts
                        break
                except aiohttp.ClientConnectionError:
                    pass
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("bridge did not start")
            async with http.get(f"http://127.0.0.1:{port}/providers") as r:
                names = [p["name"] for p in (await r.json())["providers"] if p["default"]]
                assert names == ["echo"]
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert f"http://127.0.0.1:{port}/" in out


def test_readme_documents_every_setting() -> None:
    from pathlib import Path

    from bridge.server.config import env_name, public_fields

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    missing = [env_name(f.name) for f in public_fields() if f"`{env_name(f.name)}`" not in readme]
    assert missing == []


async def test_the_readme_run_command_serves_the_demo_page() -> None:
    """``./run`` (the README's first command) sets itself up and serves the page."""
    from pathlib import Path

    root = Path(__file__).parent.parent
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BRIDGE_", "VIRTUAL_ENV"))}
    proc = subprocess.Popen(
        [str(root / "run"), "--port", str(port), "--ice-addresses", "127.0.0.1"],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(1200):  # the first run may install the package
                if proc.poll() is not None:
                    raise AssertionError(proc.stdout.read() if proc.stdout else "exited")
                try:
                    async with http.get(f"http://127.0.0.1:{port}/") as r:
                        assert r.status == 200
                        assert "rtc-bridge" in await r.text()
                        break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.1)
            else:
                raise AssertionError("./run did not serve the page")
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert "Warning" not in out and "warning:" not in out, out  # nothing from our packaging


async def test_emulate_command_serves_the_openai_protocol() -> None:
    import json

    import websockets

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = run_bridge("emulate", "openai", "--port", str(port), "--reply", "tone")
    try:
        for _ in range(200):
            try:
                ws = await websockets.connect(
                    f"ws://127.0.0.1:{port}/v1/realtime",
                    additional_headers={"Authorization": "Bearer k"},
                )
                break
            except OSError:
                await asyncio.sleep(0.05)
        else:
            raise AssertionError("the emulator did not start")
        async with ws:
            assert json.loads(await ws.recv())["type"] == "session.created"
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    assert "BRIDGE_OPENAI_URL" in out
