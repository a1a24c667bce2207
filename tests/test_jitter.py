"""The zero-delay inbound jitter buffer."""

from __future__ import annotations

from aiortc import RTCRtpReceiver
from aiortc.rtp import RtpPacket

from bridge.transports.webrtc.jitter import ImmediateJitterBuffer, install


def packet(seq: int, ts: int) -> RtpPacket:
    p = RtpPacket(sequence_number=seq, timestamp=ts)
    p._data = bytes([seq & 0xFF])  # type: ignore[attr-defined]
    return p


def test_in_order_packets_come_out_at_once_late_ones_are_dropped() -> None:
    jb = ImmediateJitterBuffer()
    out = []
    for seq in [65533, 65534, 65535, 0, 2, 1, 2, 3]:  # wraps, loses 1 then it comes late, dup
        _, frame = jb.add(packet(seq, seq * 960))
        out.append(frame.data[0] if frame else None)
    assert out == [65533 & 0xFF, 65534 & 0xFF, 255, 0, 2, None, None, 3]
    assert jb.dropped == 2


def test_install_replaces_aiortcs_buffer() -> None:
    class Transport:
        state = "new"

    receiver = RTCRtpReceiver("audio", Transport())  # type: ignore[arg-type]
    assert install(receiver)
    assert isinstance(receiver._RTCRtpReceiver__jitter_buffer, ImmediateJitterBuffer)  # type: ignore[attr-defined]
    assert not install(object())
