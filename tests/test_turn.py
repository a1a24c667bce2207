"""TURN: credentials minted by the bridge against a real coturn on 127.0.0.1.

A client forced to relay-only ICE (aiortc's ``iceTransportPolicy=RELAY``) takes its TURN
credentials from ``GET /ice-servers``, reaches the bridge through coturn and hears the echo of
its tone; expired credentials are refused; ``/ice-servers`` and ``/diag/ice`` tell what they
should. coturn must be allowed to relay to loopback peers (``--allow-loopback-peers``), as
everything here stays on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import hmac
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aioice import stun
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCIceServer, RTCIceTransportPolicy

from bridge.server import turn
from bridge.server.keys import SETTINGS
from bridge.transports.webrtc.ice import IceServer
from bridge.transports.webrtc.peer import selected_pair
from tests.peer import ClientPeer, dominant_frequency
from tests.support import Bridge, wait_heard, wait_until

TURNSERVER = shutil.which("turnserver")


@dataclasses.dataclass
class Coturn:
    port: int
    secret: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"turn:127.0.0.1:{self.port}?transport=udp"


def _free_udp_and_tcp_port() -> int:
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port")


def _free_udp_range(size: int) -> int:
    """The first port of ``size`` consecutive free UDP ports (for coturn's relays)."""
    rng = secrets.SystemRandom()
    for _ in range(100):
        base = rng.randrange(40000, 60000 - size)
        sockets = []
        try:
            for port in range(base, base + size):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sockets.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no free UDP port range")


def _answers_stun(port: int) -> bool:
    request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.2)
        s.sendto(bytes(request), ("127.0.0.1", port))
        try:
            data, _ = s.recvfrom(2048)
        except OSError:
            return False
    return stun.parse_message(data).transaction_id == request.transaction_id


@pytest.fixture(scope="module")
def coturn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coturn]:
    if TURNSERVER is None:
        pytest.skip("coturn's turnserver is not installed (apt-get install coturn)")
    folder = tmp_path_factory.mktemp("coturn")
    port, relay = _free_udp_and_tcp_port(), _free_udp_range(20)
    secret = secrets.token_urlsafe(24)
    log = folder / "turnserver.log"
    args = [
        TURNSERVER,
        "-n",  # no configuration file: only these options
        "--listening-ip=127.0.0.1",
        f"--listening-port={port}",
        "--relay-ip=127.0.0.1",
        f"--min-port={relay}",
        f"--max-port={relay + 19}",
        "--use-auth-secret",
        f"--static-auth-secret={secret}",
        "--realm=test",
        "--allow-loopback-peers",  # coturn refuses to relay to 127.x.x.x otherwise
        "--no-tls",
        "--no-dtls",
        "--no-cli",
        "--no-rfc5780",
        "--no-software-attribute",
        f"--userdb={folder / 'turndb'}",
        f"--pidfile={folder / 'turnserver.pid'}",
        "--log-file=stdout",
        "--simple-log",
    ]
    started = time.monotonic()
    with log.open("wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    try:
        while not _answers_stun(port):
            if process.poll() is not None or time.monotonic() - started > 10:
                raise RuntimeError(f"turnserver did not start: {log.read_text()[-2000:]}")
        print(f"\ncoturn ready in {(time.monotonic() - started) * 1000:.0f} ms on port {port}")
        yield Coturn(port, secret, process, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def relay_only(ice_servers: list[dict[str, Any]]) -> RTCConfiguration:
    return RTCConfiguration(
        iceServers=[RTCIceServer(**entry) for entry in ice_servers],
        iceTransportPolicy=RTCIceTransportPolicy.RELAY,
        bundlePolicy=RTCBundlePolicy.MAX_BUNDLE,
    )


def candidate_types(sdp: str) -> list[str]:
    return [line.split(" typ ", 1)[1].split()[0] for line in sdp.splitlines() if " typ " in line]


async def turn_bridge(start_bridge: Any, coturn: Coturn, **overrides: Any) -> Bridge:
    bridge: Bridge = await start_bridge(
        turn_urls=(coturn.url,), turn_secret=coturn.secret, **overrides
    )
    return bridge


async def test_relay_only_client_with_minted_credentials_hears_the_echo(
    start_bridge: Any, coturn: Coturn
) -> None:
    bridge = await turn_bridge(start_bridge, coturn)
    loop = asyncio.get_running_loop()
    async with bridge.http.get(f"{bridge.url}/ice-servers") as r:
        assert r.status == 200
        servers = (await r.json())["iceServers"]
    client = ClientPeer(configuration=relay_only(servers))
    try:
        started = loop.time()
        offer = await client.offer()
        gathered = loop.time() - started
        assert set(candidate_types(offer)) == {"relay"}, offer  # only the TURN allocation
        await client.connect(bridge.http, bridge.url)
        await client.wait_connected()
        connected = loop.time() - started
        await client.wait_event("open")
        # The client's media leaves through coturn: its nominated pair starts at its relay.
        pair = selected_pair(client.pc)
        assert pair is not None and pair["local"]["type"] == "relay", pair

        speak = loop.time()
        client.mic.say(440, 1.0)
        client.mic.pause(1.0)
        reply = await wait_heard(client, 0.8, after=speak)
        heard = loop.time() - speak
        assert abs(dominant_frequency(reply, client.heard.rate) - 440) < 10

        # The bridge sees the client's relay candidate on the pair its media uses, and its
        # periodic stats fill in RTT, jitter and loss.
        async def stats_ready() -> bool:
            async with bridge.http.get(f"{bridge.url}/sessions/{client.session_id}") as r:
                network = (await r.json())["network"]
            return network.get("rtt_ms") is not None and "inbound" in network

        await wait_until(stats_ready, timeout=6)
        async with bridge.http.get(f"{bridge.url}/sessions/{client.session_id}") as r:
            network = (await r.json())["network"]
        print(
            f"\nrelay-only call: gathered {gathered * 1000:.0f} ms, connected "
            f"{connected * 1000:.0f} ms, echo heard {heard:.2f} s after speaking; "
            f"bridge sees {network}"
        )
        assert network["selected_pair"]["remote"]["type"] == "relay", network
        assert network["ice_state"] == "completed"
        assert network["inbound"]["packets"] > 50 and network["inbound"]["loss_pct"] == 0
        assert 0 <= network["rtt_ms"] < 200 and network["inbound"]["jitter_ms"] < 50
        assert network["outbound"]["packets"] > 50
    finally:
        await client.close()


async def test_the_bridge_allocates_its_own_relay_with_minted_credentials(
    start_bridge: Any, coturn: Coturn
) -> None:
    """The bridge uses TURN itself: its answer carries a relay candidate of its own."""
    bridge = await turn_bridge(start_bridge, coturn)
    (server,) = turn.bridge_servers(bridge.app[SETTINGS])
    assert server.username is not None and server.username.endswith(":bridge")
    assert abs(int(server.username.split(":")[0]) - (time.time() + 3600)) < 5  # turn_ttl
    client = ClientPeer()
    try:
        body = await client.connect(bridge.http, bridge.url)
        assert "relay" in candidate_types(body["sdp"]) and "host" in candidate_types(body["sdp"])
        await client.wait_connected()
        await client.wait_event("open")
    finally:
        await client.close()


async def test_expired_credentials_are_refused(coturn: Coturn) -> None:
    expired = turn.mint(coturn.secret, [coturn.url], ttl=-60, id="late")
    wrong = turn.mint("not-" + coturn.secret, [coturn.url], ttl=600, id="wrong")
    good = turn.mint(coturn.secret, [coturn.url], ttl=600, id="good")
    loop = asyncio.get_running_loop()

    # aiortc gathers no relay candidate with them (aioice drops the failed allocation) ...
    client = ClientPeer(configuration=relay_only(expired))
    try:
        started = loop.time()
        offer = await client.offer()
        took = loop.time() - started
        assert candidate_types(offer) == [], offer
        assert took < 4, "coturn should refuse at once, not time out"
    finally:
        await client.close()

    # ... and the allocation itself fails with coturn's 401, while good credentials work.
    for entry, ok in ((expired[0], False), (wrong[0], False), (good[0], True)):
        result = await turn.probe_turn(coturn.url, entry["username"], entry["credential"])
        print(f"\nallocation with {entry['username']}: {result}")
        assert result["ok"] is ok, result
        if not ok:
            assert "401" in result["error"], result
    print(f"relay-only gathering with expired credentials gave up after {took * 1000:.0f} ms")


async def test_ice_servers_hands_out_credentials_never_the_secret(
    start_bridge: Any, coturn: Coturn
) -> None:
    bridge = await turn_bridge(start_bridge, coturn, ice_servers=("stun:127.0.0.1:3478",))
    answers = []
    for _ in range(2):
        async with bridge.http.get(f"{bridge.url}/ice-servers") as r:
            assert r.status == 200
            assert r.headers["Cache-Control"] == "no-store"
            text = await r.text()
            answers.append(await r.json())
        assert coturn.secret not in text
    body = answers[0]
    assert body["ttl"] == 3600
    turn_entry, stun_entry = body["iceServers"]
    assert stun_entry == {"urls": ["stun:127.0.0.1:3478"]}
    assert turn_entry["urls"] == [coturn.url]
    expiry, _, user = turn_entry["username"].partition(":")
    assert abs(int(expiry) - (time.time() + 3600)) < 5 and user
    mac = hmac.new(coturn.secret.encode(), turn_entry["username"].encode(), hashlib.sha1)
    assert turn_entry["credential"] == base64.b64encode(mac.digest()).decode()
    # Fresh credentials per request.
    assert answers[1]["iceServers"][0]["username"] != turn_entry["username"]

    links = turn.whip_link_headers(body["iceServers"])
    assert links == [
        f'<{coturn.url}>; rel="ice-server"; username="{turn_entry["username"]}"; '
        f'credential="{turn_entry["credential"]}"; credential-type="password"',
        '<stun:127.0.0.1:3478>; rel="ice-server"',
    ]
    assert turn.whip_link_headers([IceServer(("turn:h",), 'a"b', "c\\d")]) == [
        '<turn:h>; rel="ice-server"; username="a\\"b"; credential="c\\\\d"; '
        'credential-type="password"'
    ]
    with pytest.raises(ValueError):
        turn.whip_link_headers([IceServer(("turn:h>\r\nX-Evil: 1",))])


async def test_diag_ice_reports_loopback_candidates_and_warns(
    start_bridge: Any, coturn: Coturn
) -> None:
    plain = await start_bridge()
    async with plain.http.get(f"{plain.url}/diag/ice") as r:
        assert r.status == 200
        diag = await r.json()
    assert diag["candidates"], diag
    assert {(c["address"], c["type"], c["scope"]) for c in diag["candidates"]} == {
        ("127.0.0.1", "host", "loopback")
    }
    assert diag["stun"]["configured"] is False and diag["turn"]["configured"] is False
    assert diag["reachable_from_outside"] is False
    assert any("no candidate is reachable from outside" in w for w in diag["warnings"]), diag
    async with plain.http.get(f"{plain.url}/diag/ice?probe=maybe") as r:
        assert r.status == 400
        assert (await r.json())["error"]["code"] == "invalid_probe"

    # With TURN the bridge is reachable through the relay; the probe allocates one.
    relayed = await turn_bridge(start_bridge, coturn)
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with relayed.http.get(f"{relayed.url}/diag/ice?probe=1") as r:
        assert r.status == 200
        text = await r.text()
        diag = await r.json()
    took = loop.time() - started
    print(f"\n/diag/ice?probe=1 in {took * 1000:.0f} ms: {diag}")
    assert coturn.secret not in text
    assert diag["turn"]["configured"] is True and diag["reachable_from_outside"] is True
    assert diag["turn"]["used_by_bridge"] == coturn.url
    (probe,) = diag["probe"]["turn"]
    assert probe["ok"] is True and probe["relayed_address"].startswith("127.0.0.1:"), probe
    assert not any("reachable from outside" in w for w in diag["warnings"])
    assert any("only loopback candidates" in w for w in diag["warnings"])

    # A bridge whose secret is not coturn's is told so by the probe.
    wrong = await turn_bridge(
        start_bridge, dataclasses.replace(coturn, secret="not-" + coturn.secret)
    )
    async with wrong.http.get(f"{wrong.url}/diag/ice?probe=1") as r:
        diag = await r.json()
    assert diag["probe"]["turn"][0]["ok"] is False
    assert any(coturn.url in w and "401" in w for w in diag["warnings"]), diag["warnings"]


def test_network_figures_from_an_aiortc_report() -> None:
    from types import SimpleNamespace as S

    from bridge.transports.webrtc.peer import network_figures

    report = {
        "in": S(type="inbound-rtp", kind="audio", packetsReceived=98, packetsLost=2, jitter=480),
        "rin": S(
            type="remote-inbound-rtp",
            kind="audio",
            roundTripTime=0.0123,
            packetsLost=1,
            fractionLost=64,
            jitter=96,
        ),
        "out": S(type="outbound-rtp", kind="audio", packetsSent=200),
        "t": S(type="transport"),
    }
    assert network_figures(report, 48000) == {
        "inbound": {"packets": 98, "lost": 2, "loss_pct": 2.0, "jitter_ms": 10.0},
        "rtt_ms": 12.3,
        "outbound": {"lost": 1, "fraction_lost": 0.25, "jitter_ms": 2.0, "packets": 200},
    }


def test_credentials_follow_coturn_rest_format() -> None:
    username, credential = turn.credentials("s3cret", 60, "user:1/2", now=1_700_000_000)
    assert username == "1700000060:user_1_2"  # no second ':' in the id
    expected = hmac.new(b"s3cret", username.encode(), hashlib.sha1).digest()
    assert base64.b64decode(credential) == expected
    assert turn.mint("s3cret", [], 60, "x", stun_urls=["stun:a"]) == [{"urls": ["stun:a"]}]
    with pytest.raises(ValueError):
        turn.credentials("", 60, "x")
