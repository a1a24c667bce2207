"""The media fast path: audio RTP between the socket and the bridge without aiortc's chain.

Real calls (an aiortc client against the bridge on 127.0.0.1) check that both directions take
it, that the audio and aiortc's RTCP figures stay right (counters the peer's reports and the
RTT depend on), that spoofed datagrams are dropped without harm, and that turning it off keeps
aiortc's path. The RTP header parser is checked against aiortc's serializer.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
from typing import Any

import pytest
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap, RtpPacket
from hypothesis import given
from hypothesis import strategies as st

from bridge.transports.webrtc.fastpath import parse_rtp
from bridge.transports.webrtc.peer import WebRTCCall
from tests.peer import ClientPeer, connected, dominant_frequency
from tests.support import Bridge, wait_heard, wait_until


def test_parse_rtp_reads_header_csrcs_extension_and_padding() -> None:
    plain = struct.pack("!BBHLL", 0x80, 111, 7, 960, 0xABCD) + b"opus"
    assert parse_rtp(plain) == (111, 7, 960, 0xABCD, b"opus")
    # marker bit, two CSRCs, a one-word extension and 3 bytes of padding
    header = struct.pack("!BBHLL", 0xB2, 0x80 | 0, 65535, 1, 2) + b"\0" * 8
    extension = struct.pack("!HH", 0xBEDE, 1) + b"\x10\x30\0\0"
    assert parse_rtp(header + extension + b"pcmu" + b"\0\0\x03") == (0, 65535, 1, 2, b"pcmu")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x80" * 11,  # shorter than a header
        struct.pack("!BBHLL", 0x40, 111, 1, 2, 3),  # RTP version 1
        struct.pack("!BBHLL", 0x90, 111, 1, 2, 3) + b"\xbe\xde",  # extension cut short
        struct.pack("!BBHLL", 0x90, 111, 1, 2, 3) + struct.pack("!HH", 0xBEDE, 9),
        struct.pack("!BBHLL", 0xA0, 111, 1, 2, 3) + b"ab\x00",  # zero padding length
        struct.pack("!BBHLL", 0xA0, 111, 1, 2, 3) + b"ab\x09",  # more padding than bytes
        struct.pack("!BBHLL", 0x8F, 111, 1, 2, 3),  # 15 CSRCs announced, none there
    ],
)
def test_parse_rtp_refuses_what_is_not_rtp(data: bytes) -> None:
    assert parse_rtp(data) is None


@given(st.binary(max_size=200))
def test_parse_rtp_never_raises(data: bytes) -> None:
    result = parse_rtp(data)
    if result is not None:
        assert len(result[4]) <= len(data) - 12


@given(
    payload_type=st.integers(0, 127),
    seq=st.integers(0, 0xFFFF),
    timestamp=st.integers(0, 0xFFFFFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
    csrcs=st.lists(st.integers(0, 0xFFFFFFFF), max_size=15),
    mid=st.none() | st.text("0123456789abc", min_size=1, max_size=4),
    padding=st.integers(0, 40),
    payload=st.binary(max_size=300),
)
def test_parse_rtp_agrees_with_aiortc(
    payload_type: int,
    seq: int,
    timestamp: int,
    ssrc: int,
    csrcs: list[int],
    mid: str | None,
    padding: int,
    payload: bytes,
) -> None:
    extensions = HeaderExtensionsMap()
    mid_uri = "urn:ietf:params:rtp-hdrext:sdes:mid"
    extensions.configure(
        RTCRtpParameters(headerExtensions=[RTCRtpHeaderExtensionParameters(id=1, uri=mid_uri)])
    )
    packet = RtpPacket(payload_type=payload_type, sequence_number=seq, timestamp=timestamp)
    packet.ssrc, packet.csrc, packet.payload, packet.padding_size = ssrc, csrcs, payload, padding
    packet.extensions.mid = mid
    wire = packet.serialize(extensions)
    assert parse_rtp(wire) == (payload_type, seq, timestamp, ssrc, payload)
    theirs = RtpPacket.parse(wire, extensions)
    assert theirs.payload == payload


def call_of(bridge: Bridge, client: ClientPeer) -> WebRTCCall:
    conversation = bridge.registry.get(client.session_id or "")
    assert conversation is not None
    call = conversation.transport
    assert isinstance(call, WebRTCCall)
    return call


async def session(bridge: Bridge, client: ClientPeer) -> dict[str, Any]:
    async with bridge.http.get(f"{bridge.url}/sessions/{client.session_id}") as r:
        assert r.status == 200
        return await r.json()  # type: ignore[no-any-return]


async def client_stats(client: ClientPeer) -> dict[str, Any]:
    return {s.type: s for s in (await client.pc.getStats()).values()}


async def echo_once(client: ClientPeer, freq: float = 440.0) -> None:
    """Say a tone and hear it come back (the call's audio works both ways)."""
    start = asyncio.get_running_loop().time()
    client.mic.say(freq, 0.8)
    client.mic.pause(0.8)
    reply = await wait_heard(client, 0.5, after=start)
    assert abs(dominant_frequency(reply, client.heard.rate) - freq) < 10


async def test_a_call_takes_the_fast_path_both_ways_and_keeps_rtcp_right(bridge: Bridge) -> None:
    client = await connected(bridge)
    try:
        await echo_once(client)
        body = await session(bridge, client)
        assert body["fast_path"] == {"inbound": True, "outbound": True}
        call = call_of(bridge, client)
        assert call.track.driven
        # aiortc's receive path (the jitter buffer slot) saw none of the audio.
        assert call._inbound is not None
        assert call._inbound.packets > 50 and call._inbound.via_aiortc == 0

        async def figures_arrived() -> bool:
            network = (await session(bridge, client))["network"]
            return network.get("rtt_ms") is not None and "inbound" in network

        # RTT needs a receiver report of the client that echoes a sender report of the bridge,
        # built from the counters and NTP time the fast sender keeps.
        await wait_until(figures_arrived, timeout=10)
        network = (await session(bridge, client))["network"]
        assert 0 <= network["rtt_ms"] < 200, network
        assert network["outbound"]["packets"] > 50
        # The sender's count (what its reports and getStats() say) is what the client got.
        ours = await client_stats(client)
        sent = call._sender._RTCRtpSender__packet_count
        received = ours["inbound-rtp"].packetsReceived
        assert received > 50 and 0 <= sent - received <= 3, (sent, received)  # a few in flight
        assert ours["inbound-rtp"].packetsLost == 0
        # The bridge's sender reports carry its counts and the wall clock (NTP) of its last packet.
        report = ours["remote-outbound-rtp"]
        assert 0 < report.packetsSent <= sent and report.bytesSent >= report.packetsSent, report
        assert abs((report.remoteTimestamp - report.timestamp).total_seconds()) < 3, report
        inbound = network["inbound"]
        assert inbound["packets"] > 50 and inbound["lost"] == 0, inbound
    finally:
        await client.close()


async def test_spoofed_datagrams_on_the_media_socket_are_dropped(bridge: Bridge) -> None:
    client = await connected(bridge)
    try:
        await echo_once(client)
        call = call_of(bridge, client)
        pair = call._pc.getTransceivers()[0].receiver.transport.transport._connection._nominated[1]
        target = (pair.local_candidate.host, pair.local_candidate.port)
        before = (await session(bridge, client))["inbound"]
        header = struct.pack("!BBHLL", 0x80, 111, 1, 2, 3)
        junk = [
            header + os.urandom(40),  # SRTP-looking, wrong authentication tag
            header[:5],  # too short for RTP
            b"\x90" + bytes([111]) + os.urandom(60),  # random after a plausible start
            b"\x80\xc8" + os.urandom(30),  # RTCP sender report shape, not protected
            b"\x17\xfe\xfd" + os.urandom(20),  # a DTLS record
            b"\x00\x01\x00\x00" + os.urandom(16),  # a STUN-looking header
        ]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for _ in range(20):
                for data in junk:
                    sock.sendto(data, target)
        await echo_once(client, 660)
        after = (await session(bridge, client))["inbound"]
        assert after["decode_errors"] == before["decode_errors"]
        assert client.pc.connectionState == "connected"
    finally:
        await client.close()


async def test_turned_off_the_call_takes_aiortcs_path(start_bridge: Any) -> None:
    bridge = await start_bridge(media_fast_path=False)
    client = await connected(bridge)
    try:
        await echo_once(client)
        body = await session(bridge, client)
        assert body["fast_path"] == {"inbound": False, "outbound": False}
        assert body["inbound"]["packets"] > 50
        call = call_of(bridge, client)
        assert call._inbound is not None
        assert call._inbound.via_aiortc == call._inbound.packets
        assert not call.track.driven
    finally:
        await client.close()


async def test_closing_a_fast_call_leaves_nothing_behind(bridge: Bridge) -> None:
    client = await connected(bridge)
    await echo_once(client)
    call = call_of(bridge, client)
    clock = call.track._clock
    assert clock._tickers
    await client.close()
    await wait_until(lambda: asyncio.sleep(0, not list(bridge.registry)), timeout=10)
    assert not clock._tickers
    protocol = call._pc  # closed: aiortc released the transports
    assert protocol.connectionState == "closed"
