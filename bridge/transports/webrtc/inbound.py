"""The inbound fast path: RTP payload in, provider audio out, inside the event loop.

aiortc hands each received packet to a jitter buffer, then to a decoder thread, then back to
the event loop through ``run_coroutine_threadsafe`` and a queue per track, as 48 kHz stereo
frames. For a bridge that forwards audio, most of that is overhead and delay. Installed as the
receiver's jitter buffer, :class:`InboundAudio` takes each packet as it arrives (in order;
late and duplicate packets are dropped), decodes it itself (Opus straight to the provider's
rate with libopus, :mod:`bridge.audio.opus`; G.711 by table), resamples only what still needs
it (G.711 for a 24 kHz provider, or Opus when libopus is missing) with one stateful resampler,
and hands it over.
A G.711 payload for a G.711 provider is passed on as it is. aiortc's decoder then has nothing
to do and its track queue stays empty.

Packets reach it two ways: through aiortc's receiver, installed in its jitter buffer slot (see
:mod:`bridge.transports.webrtc.jitter`; until the call is connected, or with the fast path
off), or straight from the socket's callback (:mod:`bridge.transports.webrtc.fastpath`) once
it is. Both hand over the same (payload type, sequence number, payload) to :meth:`receive`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import av
import numpy as np
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtp import RtpPacket

from bridge.audio import g711, opus
from bridge.audio.format import AudioFormat
from bridge.audio.resample import Resampler, split

log = logging.getLogger(__name__)


class InboundAudio:
    """A receiver's jitter buffer that decodes and delivers; see the module docstring."""

    capacity = 1

    def __init__(
        self,
        payload_types: dict[int, str],
        target: AudioFormat,
        deliver: Callable[[bytes], None],
        clock: Callable[[], float],
        on_latency: Callable[[float], None] | None = None,
        *,
        direct_opus: bool = True,
    ) -> None:
        self._on_latency = on_latency
        self._codecs = payload_types
        self._target = target
        self._deliver = deliver
        self._clock = clock
        self._opus: Any = None  # PyAV's decoder (48 kHz), when libopus can't be used directly
        self._direct_opus = direct_opus
        self._direct: opus.OpusDecoder | None = None
        self._closed = False
        self._resampler = Resampler(target.rate)
        self._chunk = target.rate * 20 // 1000
        self._last_seq: int | None = None
        self.last_packet_at: float | None = None
        self.packets = 0
        self.via_aiortc = 0  # packets that came through aiortc's receiver, not the fast path
        self.dropped = 0
        self.decode_errors = 0

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        """aiortc's jitter buffer interface: a packet that took aiortc's receive path."""
        payload: bytes = packet._data  # type: ignore[attr-defined]  # depayloaded by aiortc
        self.via_aiortc += 1
        self.receive(packet.payload_type, packet.sequence_number, payload)
        return False, None

    def receive(self, payload_type: int, seq: int, payload: bytes) -> None:
        """One RTP packet's payload, from aiortc or from the fast path (:mod:`.fastpath`)."""
        if self._closed:  # a packet aiortc still had in hand while the call closed
            return
        if self._last_seq is not None:
            ahead = (seq - self._last_seq) & 0xFFFF
            if ahead == 0 or ahead >= 0x8000:
                self.dropped += 1
                return
        self._last_seq = seq
        self.last_packet_at = arrived = self._clock()
        self.packets += 1
        codec = self._codecs.get(payload_type)
        try:
            self._handle(codec, payload)
        except (av.FFmpegError, ValueError) as exc:
            self.decode_errors += 1
            log.debug("inbound packet not decodable (%s): %s", codec, exc)
        except Exception:  # a bug downstream must not kill aiortc's receive loop
            self.decode_errors += 1
            log.exception("inbound audio failed")
        if self._on_latency is not None:
            self._on_latency((self._clock() - arrived) * 1000)

    def close(self) -> None:
        """Free the decoder now (not whenever the collector gets to it); idempotent."""
        self._closed = True
        if self._direct is not None:
            self._direct.close()
            self._direct = None

    def _handle(self, codec: str | None, payload: bytes) -> None:
        target = self._target
        if codec in ("pcmu", "pcma"):
            if target.encoding == codec:
                self._deliver(payload)  # G.711 to a G.711 provider: untouched
                return
            samples, rate = g711.decode(payload, codec), 8000
        elif codec == "opus":
            if self._direct is None and self._direct_opus:
                self._direct = opus.decoder(target.rate)
                self._direct_opus = self._direct is not None
            if self._direct is not None:
                samples, rate = self._direct.decode(payload), self._direct.rate
            else:
                samples, rate = self._decode_opus(payload), 48000
        else:
            self.dropped += 1
            return
        pcm = self._resampler.resample_pcm(samples, rate)
        if target.is_g711:
            self._deliver(g711.encode(pcm, target.encoding))
            return
        for piece in split(pcm, self._chunk):
            self._deliver(piece)

    def _decode_opus(self, payload: bytes) -> np.ndarray[Any, Any]:
        if self._opus is None:
            self._opus = av.CodecContext.create("libopus", "r")
            self._opus.sample_rate = 48000
            self._opus.layout = "mono"  # libopus downmixes: half the samples to resample
            self._opus.format = "s16"
        frames = self._opus.decode(av.Packet(payload))
        if len(frames) == 1:
            return frames[0].to_ndarray().reshape(-1)  # type: ignore[no-any-return]
        if not frames:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate([f.to_ndarray().reshape(-1) for f in frames])
