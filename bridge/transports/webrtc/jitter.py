"""A zero-delay receive jitter buffer for the bridge's inbound audio.

aiortc's audio jitter buffer holds 4 frames before releasing one (80 ms on loopback) and,
after the first lost packet, stays at about 280 ms for good (aiortc #543). That suits a
player; the bridge is not one: it forwards audio to a provider that has its own buffering.
Every audio RTP packet is a whole frame, so this buffer releases each packet as it arrives,
in order, and drops packets older than the newest one released (late or duplicated): loss
shows as a gap in ``pts``, never as added delay.

aiortc has no public seam for this: :func:`install` swaps the receiver's private buffer. The
aiortc version is pinned (``aiortc==1.16.*``) and the tests exercise this path on every run.
"""

from __future__ import annotations

import logging
from typing import Any

from aiortc.jitterbuffer import JitterFrame
from aiortc.rtp import RtpPacket

log = logging.getLogger(__name__)

_PRIVATE_ATTRIBUTE = "_RTCRtpReceiver__jitter_buffer"


class ImmediateJitterBuffer:
    """Release each audio packet at once; drop the ones that arrive after a newer one."""

    capacity = 1

    def __init__(self) -> None:
        self._last: int | None = None
        self.dropped = 0

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        seq = packet.sequence_number
        if self._last is not None:
            ahead = (seq - self._last) & 0xFFFF
            if ahead == 0 or ahead >= 0x8000:  # a duplicate, or older than what was released
                self.dropped += 1
                return False, None
        self._last = seq
        data: bytes = packet._data  # type: ignore[attr-defined]  # set by aiortc's depayloader
        return False, JitterFrame(data=data, timestamp=packet.timestamp)


def install(receiver: Any, buffer: Any = None) -> bool:
    """Give an aiortc audio receiver ``buffer`` (default: the zero-delay one); False if
    aiortc changed shape and its own buffer stays."""
    if not hasattr(receiver, _PRIVATE_ATTRIBUTE):
        log.warning("aiortc has no %s: keeping its own jitter buffer", _PRIVATE_ATTRIBUTE)
        return False
    setattr(receiver, _PRIVATE_ATTRIBUTE, buffer if buffer is not None else ImmediateJitterBuffer())
    return True
