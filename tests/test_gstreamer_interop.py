"""Interop with an independent WebRTC stack: GStreamer's webrtcbin calls the bridge and must hear
the echo of its own tone, over WHIP and ``POST /offer``, with Opus and with PCMU.

The aiortc tests have aiortc on both ends, so they share its choices. webrtcbin keeps its own
defaults here: an ``a=setup:actpass`` offer, an RSA-2048 certificate, no BUNDLE, libnice ICE,
usrsctp. The caller is ``tests/interop/gst_client.py``, run with Debian's python3 because
GStreamer's bindings (gi) are not in the venv; it runs as a subprocess, so the bridge's event
loop in this process keeps running while webrtcbin calls it.

The tests run only in a network namespace whose one interface is loopback (``./test`` makes one):
the caller then cannot send a packet anywhere but 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import functools
import json
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.netns

CLIENT = Path(__file__).resolve().parent / "interop" / "gst_client.py"
SYSTEM_PYTHON = Path("/usr/bin/python3")
PACKAGES = "gstreamer1.0-plugins-bad gstreamer1.0-nice python3-gst-1.0 gir1.2-gst-plugins-bad-1.0"
TONE_HZ = 440.0
TONE_MS = 1000
CALL_TIMEOUT_S = 20.0


def loopback_only() -> bool:
    """Whether this network namespace has no interface but ``lo``.

    Not /sys/class/net: after ``unshare --net`` sysfs is still the one mounted in the host's
    namespace and lists the host's interfaces.
    """
    return [name for _, name in socket.if_nameindex()] == ["lo"]


@functools.cache
def missing_gstreamer() -> str | None:
    """Why the GStreamer caller cannot run here, or None. The caller checks its own needs."""
    if not SYSTEM_PYTHON.exists():
        return f"{SYSTEM_PYTHON} is missing (apt-get install python3 {PACKAGES})"
    probe = subprocess.run(
        [str(SYSTEM_PYTHON), str(CLIENT), "--check"], capture_output=True, text=True, timeout=60
    )
    try:
        missing = json.loads(probe.stdout.strip().splitlines()[-1])["missing_packages"]
    except (IndexError, KeyError, ValueError):
        return f"the GStreamer check failed: {probe.stderr.strip()[-500:]}"
    if missing:
        return f"GStreamer components are missing: apt-get install {' '.join(missing)}"
    return None


@pytest.fixture(scope="module")
def webrtcbin() -> None:
    """Skip, saying why, where the caller cannot run (or could reach beyond loopback)."""
    reasons = [
        missing_gstreamer(),
        None
        if loopback_only()
        else (
            "the webrtcbin interop tests need a network namespace with only loopback; "
            "./test runs the netns tests in one (as root or with unprivileged user namespaces)"
        ),
    ]
    if any(reasons):
        pytest.skip("; ".join(r for r in reasons if r))


async def call_with_webrtcbin(
    url: str, mode: str, codec: str, offer_setup: str = "actpass"
) -> dict[str, Any]:
    """Run the caller to the end; its JSON result, with its exit status and stderr added."""
    process = await asyncio.create_subprocess_exec(
        str(SYSTEM_PYTHON),
        str(CLIENT),
        "--url",
        url,
        "--mode",
        mode,
        "--codec",
        codec,
        "--offer-setup",
        offer_setup,
        "--freq",
        str(TONE_HZ),
        "--tone-ms",
        str(TONE_MS),
        "--timeout",
        str(CALL_TIMEOUT_S),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), CALL_TIMEOUT_S + 30)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError("the GStreamer caller hung past its own timeout") from None
    stderr = err.decode(errors="replace")
    lines = out.decode(errors="replace").strip().splitlines()
    assert lines, f"the caller printed no result (exit {process.returncode}):\n{stderr[-4000:]}"
    result: dict[str, Any] = json.loads(lines[-1])
    result["exit_status"] = process.returncode
    result["stderr"] = stderr
    return result


def summary(result: dict[str, Any]) -> str:
    """The result without the caller's log, then the log's end: what a failure report needs."""
    brief = {k: v for k, v in result.items() if k != "stderr"}
    log = str(result["stderr"])[-4000:]
    return f"{json.dumps(brief, indent=1)}\n--- caller stderr (end) ---\n{log}"


@pytest.mark.parametrize("codec", ["opus", "pcmu"])
@pytest.mark.parametrize("mode", ["whip", "offer"])
async def test_webrtcbin_hears_the_echo_of_its_tone(
    webrtcbin: None, start_bridge: Callable[..., Any], mode: str, codec: str
) -> None:
    bridge = await start_bridge(provider="echo")
    result = await call_with_webrtcbin(bridge.url, mode, codec)
    why = summary(result)

    # webrtcbin's defaults, the point of the test: it lets the bridge pick the DTLS role and
    # holds an RSA certificate.
    offered = result["offer"].get("audio", {})
    assert offered.get("setup") == "actpass", why
    assert str(result["local_certificate"]).startswith("rsa"), why

    assert result["errors"] == [], why
    answered = result["answer"]["audio"]
    assert answered["codecs"][0].lower().startswith(codec), why
    assert result["connected"] and result["dtls_state"] == "connected", why
    assert "open" in result["events"], why  # the events channel works over webrtcbin's SCTP
    assert result["heard_ms"] >= 0.8 * TONE_MS, why
    assert result["frequency"] is not None and abs(result["frequency"] - TONE_HZ) <= 5, why
    # It came after the tone ended: the echo provider's reply, not something played at once.
    assert result["echo_delay_ms"] is not None and result["echo_delay_ms"] > 0, why
    assert result["exit_status"] == 0, why

    assert result["delete_status"] == 200, why
    assert result["close_reason"] == "deleted", why
    assert await bridge.sessions() == []


async def test_webrtcbin_as_the_dtls_server(
    webrtcbin: None, start_bridge: Callable[..., Any]
) -> None:
    """An offer that insists on ``a=setup:passive`` makes the bridge the DTLS client facing
    webrtcbin's RSA certificate: aiortc's own client offers only ECDSA suites, the bridge adds
    the ECDHE-RSA ones (:mod:`bridge.dtls`)."""
    bridge = await start_bridge(provider="echo")
    result = await call_with_webrtcbin(bridge.url, "offer", "opus", offer_setup="passive")
    why = summary(result)
    assert result["answer"]["audio"].get("setup") == "active", why
    assert str(result["local_certificate"]).startswith("rsa"), why
    assert result["errors"] == [], why
    assert result["connected"] and result["dtls_state"] == "connected", why
    assert result["heard_ms"] >= 0.8 * TONE_MS, why
    assert result["frequency"] is not None and abs(result["frequency"] - TONE_HZ) <= 5, why
    assert await bridge.sessions() == []
