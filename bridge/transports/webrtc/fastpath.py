"""The media fast path: RTP in and out of a connected call without aiortc's per-packet chain.

Once ICE and DTLS are up, every audio packet of a call costs aiortc a STUN parse that fails, a
queue hop to the DTLS task (a wake-up of its own), a full ``RtpPacket`` parse, routing and the
receiver's bookkeeping on the way in; and on the way out a sender coroutine per call, an
``RtpPacket``, and three awaits down to the socket. For a bridge that forwards 50 small packets
a second per direction per call, that chain costs more than decoding the audio.

:func:`install_inbound` puts a datagram handler in front of the nominated ICE pair's socket
protocol: SRTP packets of the call's audio go straight to SRTP unprotect (the same libsrtp
session aiortc made, so the replay window stays one), a header parse, aiortc's RTCP receiver
statistics (so its receiver reports and ``getStats()`` stay right) and
:class:`~bridge.transports.webrtc.inbound.InboundAudio`, all inside the socket's callback.
Everything else (STUN consent checks, DTLS for the data channel, RTCP, RTX, unknown payload
types, other SSRCs) takes aiortc's path unchanged.

:class:`FastSender` is the way out: the frame clock calls the outbound track, which hands each
payload to ``FastSender.send``: the RTP header aiortc would write (its SSRC, the negotiated
payload type, MID and abs-send-time extensions, the marker bit it sets on every audio packet),
SRTP protect with aiortc's session, ``sendto`` on the nominated pair's socket, and the sender's
counters that its RTCP sender reports and ``getStats()`` read.

What is skipped: aiortc's per-packet ``current_datetime()`` for ``getSynchronizationSources()``
(the bridge never asks), NACK generation (aiortc runs it for video only) and the sender's RTP
history for retransmission (aiortc negotiates no NACK or RTX for audio).

This reaches into aiortc's and aioice's private attributes; the versions are pinned, the
install checks every attribute it needs and reports False (aiortc's path stays) when one is
missing, and every call in the tests runs through it.
"""

from __future__ import annotations

import logging
import random
import struct
import time
from collections.abc import Callable
from typing import Any

import pylibsrtp
from aioice.ice import StunProtocol
from aiortc.rtcdtlstransport import State
from aiortc.rtcrtpreceiver import StreamStatistics
from aiortc.rtp import HeaderExtensions

log = logging.getLogger(__name__)

_REMOTE_STREAMS = "_RTCRtpReceiver__remote_streams"
_CODECS = "_RTCRtpReceiver__codecs"
_RX_BYTES = "_RTCDtlsTransport__rx_bytes"
_RX_PACKETS = "_RTCDtlsTransport__rx_packets"
_TX_BYTES = "_RTCDtlsTransport__tx_bytes"
_TX_PACKETS = "_RTCDtlsTransport__tx_packets"
_SENDER = "_RTCRtpSender__"
NTP_EPOCH_OFFSET = 2_208_988_800  # seconds from 1900 (NTP) to 1970 (Unix)
_HEADER = struct.Struct("!BBHLLHH")  # RTP header with a header extension's profile and length


class _Header:
    """What aiortc's ``StreamStatistics.add`` reads of a packet."""

    __slots__ = ("sequence_number", "timestamp")

    def __init__(self, sequence_number: int, timestamp: int) -> None:
        self.sequence_number = sequence_number
        self.timestamp = timestamp


def parse_rtp(data: bytes) -> tuple[int, int, int, int, bytes] | None:
    """(payload type, sequence number, timestamp, SSRC, payload) of a plain RTP packet, or
    None when it is not one we can use (short, wrong version, bad extension or padding)."""
    size = len(data)
    if size < 12 or data[0] >> 6 != 2:
        return None
    first = data[0]
    pos = 12 + 4 * (first & 0x0F)
    if first & 0x10:  # header extension: 4 bytes of profile and length, then the words
        if size < pos + 4:
            return None
        pos += 4 + 4 * int.from_bytes(data[pos + 2 : pos + 4], "big")
    end = size
    if first & 0x20:  # padding: its length is the last byte
        end -= data[-1]
        if data[-1] == 0:
            return None
    if pos > end:
        return None
    return (
        data[1] & 0x7F,
        int.from_bytes(data[2:4], "big"),
        int.from_bytes(data[4:8], "big"),
        int.from_bytes(data[8:12], "big"),
        data[pos:end],
    )


def install_inbound(
    receiver: Any, on_packet: Callable[[int, int, bytes], None]
) -> Callable[[], None] | None:
    """Route the receiver's audio RTP to ``on_packet(payload_type, sequence, payload)`` from
    the socket's callback; returns the function that takes the fast path out again, or None
    when this aiortc/aioice can't be bypassed (its own path then stays)."""
    try:
        dtls = receiver.transport
        srtp = dtls._rx_srtp
        streams: dict[int, StreamStatistics] = getattr(receiver, _REMOTE_STREAMS)
        codecs: dict[int, Any] = getattr(receiver, _CODECS)
        getattr(dtls, _RX_BYTES)
        receiver._enabled  # noqa: B018 - checked here, read per packet
        pair = dtls.transport._connection._nominated.get(1)
        protocol = pair.protocol
    except AttributeError as exc:
        log.warning("aiortc changed (%s): inbound audio takes aiortc's path", exc)
        return None
    if srtp is None or type(protocol) is not StunProtocol or "datagram_received" in vars(protocol):
        return None  # not connected yet, or already installed
    original = protocol.datagram_received

    def datagram_received(data: bytes, addr: tuple[Any, ...]) -> None:
        # SRTP (first byte 128-191) that is not SRTCP (second byte 192-208): RFC 7983, 5761.
        if (
            len(data) < 12
            or not 127 < data[0] < 192
            or 191 < data[1] < 209
            or (codec := codecs.get(data[1] & 0x7F)) is None  # not yet receiving, or unknown
            or codec.name == "rtx"
        ):
            original(data, addr)
            return
        if not receiver._enabled:
            return  # the transceiver no longer receives: aiortc drops these too
        try:
            plain = srtp.unprotect(data)
        except pylibsrtp.Error:
            return  # what aiortc does: a replay or a forgery is dropped
        rtp = parse_rtp(plain)
        if rtp is None:
            return  # aiortc drops what it can't parse too
        pt, seq, timestamp, ssrc, payload = rtp
        dtls.__dict__[_RX_BYTES] += len(data)
        dtls.__dict__[_RX_PACKETS] += 1
        stats = streams.get(ssrc)
        if stats is None:
            stats = streams[ssrc] = StreamStatistics(codec.clockRate)
        stats.add(_Header(seq, timestamp))  # type: ignore[arg-type]
        on_packet(pt, seq, payload)

    protocol.datagram_received = datagram_received  # type: ignore[method-assign,assignment]

    def uninstall() -> None:
        vars(protocol).pop("datagram_received", None)

    return uninstall


def _ntp_now() -> int:
    """The wall clock as a 64-bit NTP timestamp (what aiortc computes through datetime)."""
    return int((time.time() + NTP_EPOCH_OFFSET) * (1 << 32))


class FastSender:
    """RTP out of a connected sender without aiortc's sender loop; see the module docstring.

    Make it with :meth:`create` once aiortc's sender has started (it then knows its MID and
    header extension ids); it continues nothing of aiortc's, so it must send the stream's first
    packet.
    """

    def __init__(self, sender: Any, payload_type: int) -> None:
        dtls = sender.transport
        pair = dtls.transport._connection._nominated.get(1)
        if pair is None or type(pair.protocol) is not StunProtocol or dtls._tx_srtp is None:
            raise LookupError("no plain UDP pair with SRTP to send on")
        self._sender = sender
        self._dtls = dtls
        self._srtp = dtls._tx_srtp
        self._socket = pair.protocol.transport  # a UDP socket, or aioice's TURN transport
        self._closing: Callable[[], bool] = getattr(self._socket, "is_closing", lambda: False)
        self._address = pair.remote_addr
        self._ssrc: int = sender._ssrc
        self._payload_type = payload_type
        self._map = getattr(sender, _SENDER + "rtp_header_extensions_map")
        self._extensions = HeaderExtensions()
        self._extensions.mid = getattr(sender, _SENDER + "mid")
        for name in ("ntp_timestamp", "rtp_timestamp", "octet_count", "packet_count"):
            getattr(sender, _SENDER + name)
        getattr(dtls, _TX_BYTES)
        self._sequence = random.getrandbits(16)  # as aiortc: random start (RFC 3550)
        self._origin = random.getrandbits(32)
        self.packets = 0

    @classmethod
    def create(cls, sender: Any, payload_type: int) -> FastSender | None:
        """A fast sender for aiortc's ``sender``, or None when it can't have one (a TURN
        relay, not connected, or an aiortc whose private attributes changed)."""
        try:
            return cls(sender, payload_type)
        except (AttributeError, LookupError) as exc:
            log.debug("no fast sender (%s): aiortc sends", exc)
            return None

    def send(self, payload: bytes, rtp_time: int) -> bool:
        """Send one frame's payload at ``rtp_time`` (in the codec's clock, from 0); False when
        the transport is gone (nothing is sent, and nothing more should be)."""
        dtls = self._dtls
        if dtls._state != State.CONNECTED or self._closing():
            return False
        ntp = _ntp_now()
        extensions = self._extensions
        extensions.abs_send_time = (ntp >> 14) & 0x00FFFFFF
        profile, value = self._map.set(extensions)
        timestamp = (self._origin + rtp_time) & 0xFFFFFFFF
        if value:
            header = (
                _HEADER.pack(
                    0x90,
                    0x80 | self._payload_type,
                    self._sequence,
                    timestamp,
                    self._ssrc,
                    profile,
                    len(value) >> 2,
                )
                + value
            )
        else:
            header = _HEADER.pack(
                0x80, 0x80 | self._payload_type, self._sequence, timestamp, self._ssrc, 0, 0
            )[:12]
        data = self._srtp.protect(header + payload)
        self._socket.sendto(data, self._address)
        self._sequence = (self._sequence + 1) & 0xFFFF
        self.packets += 1
        sender, state = self._sender.__dict__, dtls.__dict__
        sender[_SENDER + "ntp_timestamp"] = ntp
        sender[_SENDER + "rtp_timestamp"] = timestamp
        sender[_SENDER + "octet_count"] += len(payload)
        sender[_SENDER + "packet_count"] += 1
        state[_TX_BYTES] += len(data)
        state[_TX_PACKETS] += 1
        return True
