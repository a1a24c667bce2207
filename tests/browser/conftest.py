"""Real-browser fixtures: Debian's Chromium driven by Playwright, a fake microphone fed with
speech made at test time (espeak-ng + sox), all inside a network namespace that has only the
loopback interface, so WebRTC traffic cannot leave 127.0.0.1."""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "browser"
SPEECH = "Hello bridge. Can you hear me? This is a test of the voice demo page."


def loopback_only() -> bool:
    return [name for _, name in socket.if_nameindex()] == ["lo"]


def browser_skip_reason() -> str | None:
    if not CHROMIUM.exists():
        return "chromium is not installed (apt-get install chromium); .ci/run installs it"
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install {tool}); .ci/run installs it"
    if not loopback_only():
        return (
            "browser tests need a network namespace with only loopback; ./test runs them in "
            "one (as root or with unprivileged user namespaces)"
        )
    return None


@pytest.fixture(scope="session")
def speech_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    reason = browser_skip_reason()
    if reason:
        pytest.skip(reason)
    folder = tmp_path_factory.mktemp("speech")
    raw, wav = folder / "raw.wav", folder / "speech.wav"
    subprocess.run(["espeak-ng", "-s", "150", "-w", str(raw), SPEECH], check=True)
    # 48 kHz mono, half a second of lead-in, a 1.5 s pause after the sentence (a turn end).
    subprocess.run(
        ["sox", str(raw), "-r", "48000", "-c", "1", str(wav), "pad", "0.5", "1.5"], check=True
    )
    return wav


@pytest.fixture
async def chromium(speech_wav: Path) -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-audio-capture={speech_wav}",
                "--autoplay-policy=no-user-gesture-required",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                # Only loopback exists here: let WebRTC use it, with plain (not mDNS) addresses.
                "--allow-loopback-in-peer-connection",
                "--disable-features=WebRtcHideLocalIpsWithMdns",
            ],
        )
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
