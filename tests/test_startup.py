"""``bridge serve`` refuses, with one clear line, what would fail later: a port another bridge
holds, a default provider it cannot use, settings that contradict each other; and it warns when
clients elsewhere could not reach its ICE addresses."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from typing import Any

import pytest

from tests.peer import ClientPeer
from tests.support import Bridge
from tests.test_config_cli import run_bridge


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def refused(*args: str, env: dict[str, str] | None = None) -> str:
    proc = run_bridge("serve", *args, env=env)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2, out
    assert "Traceback" not in out
    return out


def wait_for_line(proc: subprocess.Popen[str], needle: str, timeout: float = 30) -> str:
    assert proc.stdout is not None
    seen = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        seen += line
        if needle in line:
            return seen
    raise AssertionError(f"{needle!r} not printed: {seen}")


def test_a_second_bridge_on_the_same_port_is_refused() -> None:
    port = str(free_port())
    first = run_bridge("serve", "--port", port, "--workers", "2")
    try:
        wait_for_line(first, "Ctrl+C stops it")
        out = refused("--port", port)
        assert "in use" in out and port in out
        out = refused("--port", port, "--workers", "2")
        assert "in use" in out
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=30)


@pytest.mark.parametrize(
    "args, message",
    [
        (("--provider", "openai"), "provider openai cannot be used: no OpenAI API key"),
        (("--provider", "gemini"), "provider gemini cannot be used"),
        (("--lock-instructions", "true"), "lock_instructions locks the instructions"),
        (("--advertise-url", "http://10.0.0.2:8080"), "advertise_url is for replicas"),
        (("--connect-timeout", "30", "--max-call-duration", "20"), "connect_timeout must be"),
        (("--host", "0.0.0.0"), "no BRIDGE_AUTH_SECRET"),
        (("--turn-urls", "turn:127.0.0.1:3478"), "turn_urls need BRIDGE_TURN_SECRET"),
    ],
)
def test_settings_that_would_fail_later_are_refused_at_startup(
    args: tuple[str, ...], message: str
) -> None:
    out = refused("--port", str(free_port()), *args)
    assert message in out
    assert len([line for line in out.splitlines() if line.startswith("bridge: error")]) == 1


def test_a_bridge_others_cannot_reach_says_so() -> None:
    proc = run_bridge(
        "serve", "--host", "0.0.0.0", "--allow-unauthenticated", "true",
        "--ice-addresses", "127.0.0.1", "--port", str(free_port()), "--workers", "1",
    )  # fmt: skip
    try:
        seen = wait_for_line(proc, "Ctrl+C stops it")
        assert "bridge: warning: no candidate is reachable from outside" in seen
        assert "ice_addresses" in seen and "turn_urls" in seen  # what to change
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    # On a loopback host the same candidates are what its clients need: no warning.
    quiet = run_bridge("serve", "--ice-addresses", "127.0.0.1", "--port", str(free_port()))
    try:
        seen = wait_for_line(quiet, "Ctrl+C stops it")
        assert "warning" not in seen
    finally:
        quiet.send_signal(signal.SIGINT)
        quiet.communicate(timeout=30)


async def test_a_voice_the_provider_does_not_have_is_refused(bridge: Bridge) -> None:
    client = ClientPeer()
    try:
        sdp = await client.offer()
        body: dict[str, Any] = {"sdp": sdp, "type": "offer", "session": {"voice": "nobody"}}
        async with bridge.http.post(f"{bridge.url}/offer", json=body) as r:
            error = (await r.json())["error"]
            assert (r.status, error["code"]) == (400, "invalid_session")
            assert "nobody" in error["message"] and "echo" in error["message"]
    finally:
        await client.close()


def test_self_signed_tls_serves_https_for_this_machine() -> None:
    import ssl

    from cryptography import x509

    port = free_port()
    proc = run_bridge(
        "serve", "--tls", "self-signed", "--port", str(port), "--ice-addresses", "127.0.0.1",
        "--workers", "1",
    )  # fmt: skip
    try:
        seen = wait_for_line(proc, "accept the certificate")
        assert "https://" in seen
        for _ in range(200):  # the banner comes just before the socket serves
            try:
                pem = ssl.get_server_certificate(("127.0.0.1", port), timeout=2)
                break
            except OSError:
                time.sleep(0.05)
        else:
            raise AssertionError("nothing served https")
        names = x509.load_pem_x509_certificate(pem.encode()).extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        )
        assert "localhost" in names.value.get_values_for_type(x509.DNSName)
        addresses = [str(a) for a in names.value.get_values_for_type(x509.IPAddress)]
        assert "127.0.0.1" in addresses
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    assert "tls_cert and tls_key go together" in refused("--tls-cert", "/etc/hostname")
    out = refused(
        "--tls", "self-signed", "--tls-cert", "/etc/hostname", "--tls-key", "/etc/hostname"
    )
    assert "contradict" in out
