"""The outbound WebRTC audio track: provider PCM in, paced pre-encoded packets out.

aiortc does not pace, split or retime what a track returns, so this track does it: exactly one
20 ms frame per ``recv()``, contiguous ``pts``, paced on the loop's monotonic clock, silence when
the provider has nothing to say. It encodes Opus (or G.711 for telephony peers) itself and hands
aiortc ``av.Packet`` objects: aiortc then skips its per-sample Python audio-level loop and its
thread-pool hop per frame, which cost about 3x the CPU of the encoding itself.

Provider audio is buffered at its own rate (bounded). Opus encodes it at that rate when libopus
takes it (8, 12, 16, 24 or 48 kHz: every provider's), so no resampler runs and libopus analyses
half the samples of 48 kHz; RTP timestamps stay on Opus's 48 kHz clock. Otherwise (G.711
peers, odd rates) one stateful resampler per track converts straight to the codec's rate, which
also avoids the extra 20 ms frame aiortc's own encoder holds back for non-native input rates.
G.711 from the provider to a G.711 peer is not touched at all: its bytes become the packets.
Pacing comes from a :class:`~bridge.transports.webrtc.pacing.FrameClock`, shared by all tracks
of a process, so many calls cost one timer.

The track counts what it really sent per reply item, so barge-in can tell the provider how much
of a reply the user actually heard (never wall clock).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any, cast

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av.audio.codeccontext import AudioCodecContext

from bridge.audio import g711
from bridge.audio.format import PCM16_24K, AudioFormat
from bridge.audio.playout import FRAME_MS, Playback, PlayoutBuffer, PlayoutPolicy
from bridge.transports.webrtc.pacing import FrameClock

if TYPE_CHECKING:
    from bridge.core.metrics import Metrics
from bridge.audio.resample import PCM16, Resampler, pcm_frame

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class OutboundCodec:
    """What aiortc negotiated for the sender, and how we encode for it."""

    name: str  # as in the SDP rtpmap: opus, PCMU, PCMA
    av_codec: str
    rate: int

    @property
    def frame_samples(self) -> int:
        return self.rate * FRAME_MS // 1000


OPUS = OutboundCodec("opus", "libopus", 48000)
PCMU = OutboundCodec("PCMU", "pcm_mulaw", 8000)
PCMA = OutboundCodec("PCMA", "pcm_alaw", 8000)
CODECS = {c.name.lower(): c for c in (OPUS, PCMU, PCMA)}
OPUS_INPUT_RATES = (8000, 12000, 16000, 24000, 48000)  # what libopus encodes without resampling
# libopus complexity (0-10): the CPU/quality trade of the reply encode, which is the largest
# single cost of a call. 5 is what libwebrtc uses on phones; 10 is libopus's default.
DEFAULT_OPUS_COMPLEXITY = 5


def _encoder(
    codec: OutboundCodec, rate: int | None = None, complexity: int = DEFAULT_OPUS_COMPLEXITY
) -> AudioCodecContext:
    rate = rate or codec.rate
    ctx = cast(AudioCodecContext, av.CodecContext.create(codec.av_codec, "w"))
    ctx.format = "s16"
    ctx.layout = "mono"
    ctx.sample_rate = rate
    ctx.time_base = Fraction(1, rate)
    if codec is OPUS:
        ctx.bit_rate = 32000
        ctx.options = {"application": "voip", "compression_level": str(complexity)}
    ctx.open()
    return ctx


@functools.cache
def _silence_packet(codec: OutboundCodec) -> bytes:
    """One 20 ms frame of digital silence, encoded once per codec and process."""
    if codec.name != "opus":
        return bytes([g711.silence_byte(codec.name.lower())]) * codec.frame_samples
    encoder = _encoder(codec)
    zeros = np.zeros(codec.frame_samples, dtype=np.int16)
    packet = b""
    for i in range(3):  # past the encoder's start-up frames: a steady silent packet
        (encoded,) = encoder.encode(pcm_frame(zeros, codec.rate, i * codec.frame_samples))
        packet = bytes(encoded)
    return packet


class OutboundAudioTrack(MediaStreamTrack):
    """A paced audio track fed with provider PCM16 mono; see the module docstring."""

    kind = "audio"

    def __init__(
        self,
        *,
        source: AudioFormat = PCM16_24K,
        max_buffer_ms: int = 60_000,
        max_lateness_ms: int = 200,
        codec: OutboundCodec = OPUS,
        policy: PlayoutPolicy | None = None,
        metrics: Metrics | None = None,
        clock: FrameClock | None = None,
        opus_complexity: int = DEFAULT_OPUS_COMPLEXITY,
    ) -> None:
        super().__init__()
        if not 0 <= opus_complexity <= 10:
            raise ValueError(f"opus_complexity must be 0..10 (got {opus_complexity})")
        self._complexity = opus_complexity
        self._clock = clock or FrameClock(slots=1)  # a private clock: pacing of its own
        self._slot = self._clock.slot()
        self._first: int | None = None  # the clock's sub-tick of this track's first frame
        self._metrics = metrics
        self._arrived_at: float | None = None  # when audio reached an idle track
        self._max_buffer_ms = max_buffer_ms
        self._max_lateness = max_lateness_ms / 1000
        self._policy = policy or PlayoutPolicy()
        self._codec = codec
        self._source = source
        self._configure()
        self._resampler: Resampler | None = None
        self._encoder: AudioCodecContext | None = None
        self._fifo: PCM16 = np.zeros(0, dtype=np.int16)
        self._carry = b""  # half a PCM16 sample, when a chunk ended in the middle of one
        self._pts = 0  # RTP time of the next packet, in the codec's clock rate
        self._encoder_pts = 0  # the encoder's own time, in its input rate
        self._frames = 0
        self._send: Callable[[bytes, int], bool] | None = None  # set by drive()
        self._untick: Callable[[], None] | None = None
        self._driver: Callable[[], Callable[[bytes, int], bool] | None] | None = None
        self._parked: asyncio.Future[None] | None = None  # aiortc's recv() while driven
        # Statistics, read by sessions, tests and benchmarks.
        self.frames_sent = 0
        self.audio_frames_sent = 0
        self.silent_frames = 0  # sent as the cached silence packet, not encoded
        self.late_resets = 0
        self.last_audio_sent_at: float | None = None
        self.last_flush_at: float | None = None
        self.odd_chunks = 0  # provider chunks that split a sample (repaired)

    def _configure(self) -> None:
        source, codec = self._source, self._codec
        self.passthrough = source.is_g711 and source.encoding == codec.name.lower()
        # Buffered units: G.711 bytes in passthrough, else PCM16 samples at the source rate
        # (G.711 for an Opus peer is decoded on arrival).
        self._time_base = Fraction(1, codec.rate)
        self.source_rate = source.rate
        self._source_frame = self.source_rate * FRAME_MS // 1000
        opus_native = codec is OPUS and source.rate in OPUS_INPUT_RATES
        self.encode_rate = source.rate if opus_native else codec.rate
        self.playout = PlayoutBuffer(
            self.source_rate,
            max_ms=self._max_buffer_ms,
            dtype=np.uint8 if self.passthrough else np.int16,
            silence=g711.silence_byte(source.encoding) if self.passthrough else 0,
            policy=self._policy,
        )

    # -- feeding -------------------------------------------------------------------------------

    @property
    def codec(self) -> OutboundCodec:
        return self._codec

    def set_codec(self, codec: OutboundCodec) -> None:
        """Set the negotiated codec; only before the first ``recv()``."""
        self._check_unstarted()
        self._codec = codec
        self._configure()

    def set_source(self, source: AudioFormat) -> None:
        """Set the provider's audio format; only before any audio was pushed or played."""
        self._check_unstarted()
        self._source = source
        self._configure()

    def set_policy(self, policy: PlayoutPolicy) -> None:
        """How replies are held back before playing (see :mod:`bridge.audio.playout`)."""
        self._check_unstarted()
        self._policy = policy
        self._configure()

    def _check_unstarted(self) -> None:
        if self._encoder is not None or self._frames or self.playout.buffered_ms:
            raise RuntimeError("the track's formats cannot change once it has started")

    def push(self, data: bytes, item_id: str) -> None:
        """Queue reply audio (in the source format) for playback.

        The buffer is bounded: audio beyond ``max_buffer_ms`` is dropped (and counted) rather
        than blocking the provider's event stream, which must keep flowing for barge-in.
        """
        if self.readyState != "live" or not data:
            return
        samples: np.ndarray[Any, Any]
        if self.passthrough:
            samples = np.frombuffer(data, dtype=np.uint8)
        elif self._source.is_g711:
            samples = g711.decode(data, self._source.encoding)
        else:
            if self._carry or len(data) % 2:
                # A chunk that ends inside a sample: keep the odd byte for the next one.
                self.odd_chunks += len(data) % 2
                data = self._carry + data
                data, self._carry = data[: len(data) // 2 * 2], data[len(data) // 2 * 2 :]
                if not data:
                    return
            samples = np.frombuffer(data, dtype="<i2").astype(np.int16, copy=False)
        now = asyncio.get_running_loop().time()
        if self._arrived_at is None and not self.playout.buffered_ms:
            self._arrived_at = now
        self.playout.push(samples, item_id, now)

    def end_of_reply(self, item_id: str | None = None) -> None:
        """The provider sent all of the current reply: play the rest without holding back."""
        self.playout.end_of_reply(item_id)

    def flush(self) -> Playback | None:
        """Drop all queued audio at once (barge-in).

        Returns how much of the reply that was cut had been sent, or None when nothing was
        cut (the reply had already finished playing, or nothing was playing).
        """
        cut = self.playout.flush()
        self._carry = b""
        if cut is not None:
            self.last_flush_at = asyncio.get_running_loop().time()
        return cut

    def played_ms(self, item_id: str) -> int:
        """Milliseconds of ``item_id`` that have been sent to the peer so far."""
        return self.playout.played_ms(item_id)

    @property
    def buffered_ms(self) -> int:
        return self.playout.buffered_ms

    @property
    def dropped_ms(self) -> int:
        return self.playout.dropped_ms

    @property
    def playing(self) -> bool:
        return self.playout.buffered_ms > 0

    # -- aiortc side ---------------------------------------------------------------------------

    async def recv(self) -> av.Packet[Any]:
        """The next 20 ms packet, released on schedule."""
        if self.readyState != "live":
            raise MediaStreamError
        if self._driver is not None:
            make, self._driver = self._driver, None
            send = make() if not self._frames else None
            if send is not None:
                self.drive(send)
        if self._send is not None:
            # The clock drives this track (see drive()): aiortc's sender loop rests here.
            if self._parked is None:
                self._parked = asyncio.get_running_loop().create_future()
            await self._parked
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        now = loop.time()
        clock = self._clock
        if self._first is None:
            self._first = clock.first_sub_tick(now, self._slot)
        due = clock.time_of(self._first + self._frames * clock.slots)
        if due > now:
            await clock.wait(self._first + self._frames * clock.slots)
            if self.readyState != "live":
                raise MediaStreamError
            now = loop.time()
        payload, samples = self._frame(now, due)
        packet: av.Packet[Any] = av.Packet(payload)
        packet.pts = self._pts - samples
        packet.time_base = self._time_base
        return packet

    def drive_when_sending(self, make: Callable[[], Callable[[bytes, int], bool] | None]) -> None:
        """Call ``make`` when aiortc first asks for a frame (its sender has started then) and,
        when it returns a send function, :meth:`drive` the track with it."""
        self._driver = make

    def drive(self, send: Callable[[bytes, int], bool]) -> bool:
        """Let the frame clock pace this track and ``send(payload, rtp_time)`` send each frame
        (the media fast path) instead of aiortc pulling ``recv()``; only before the first frame.
        ``send`` returns False when the transport is gone: the track then stops sending.
        aiortc's sender loop waits in ``recv()`` until the track stops."""
        if self._frames or self._send is not None or self.readyState != "live":
            return False
        self._send = send
        self._untick = self._clock.add_ticker(self._tick)
        return True

    @property
    def driven(self) -> bool:
        """True while the frame clock, not aiortc, sends this track's frames."""
        return self._untick is not None

    def _tick(self, now: float) -> None:
        """The clock's call at each sub-tick: send the frames that are due (normally one)."""
        send, clock = self._send, self._clock
        if self.readyState != "live" or send is None:
            self._stop_ticking()
            return
        if self._first is None:
            self._first = clock.first_sub_tick(now, self._slot)
        # Behind by more than max_lateness, _frame() re-anchors; this bounds the loop regardless.
        for _ in range(int(self._max_lateness * 1000) // FRAME_MS + 2):
            due = clock.time_of(self._first + self._frames * clock.slots)
            if due > now + 1e-6:
                return
            payload, samples = self._frame(now, due)
            if not send(payload, self._pts - samples):
                self._stop_ticking()
                return

    def _stop_ticking(self) -> None:
        if self._untick is not None:
            self._untick()
            self._untick = None

    def _frame(self, now: float, due: float) -> tuple[bytes, int]:
        """The frame due at ``due`` (re-anchored when far behind): its payload and samples."""
        clock = self._clock
        if now - due > self._max_lateness:
            # We were starved of CPU: re-anchor on our latest slot instead of bursting.
            latest = clock.first_sub_tick(now, self._slot) - clock.slots
            self._first = latest - self._frames * clock.slots
            due = clock.time_of(latest)
            self.late_resets += 1
        self._frames += 1
        samples, had_audio = self.playout.take(self._source_frame, now)
        payload, count = self._encode(samples, had_audio)
        self._pts += count
        self.frames_sent += 1
        if self._metrics is not None:
            self._metrics.frame((now - due) * 1000)
        if had_audio:
            self.audio_frames_sent += 1
            self.last_audio_sent_at = now
            if self._arrived_at is not None:
                if self._metrics is not None:
                    self._metrics.downlink((now - self._arrived_at) * 1000)
                self._arrived_at = None
        elif self._arrived_at is not None and not self.playout.holding:
            self._arrived_at = None  # flushed before it played
        return payload, count

    def _encode(self, samples: np.ndarray[Any, Any], had_audio: bool) -> tuple[bytes, int]:
        """The RTP payload for one frame and its length in the codec's clock."""
        codec = self._codec
        if self.passthrough:
            return samples.tobytes(), samples.size
        if not had_audio and self._encoder is None:
            # Idle: a silent frame is always the same packet, so don't encode it again (libopus
            # spends more on digital silence than on speech). After audio the real encoder
            # runs one more silent frame to let its look-ahead out, then is dropped; the
            # next reply starts a fresh one, matching a decoder that has heard only silence.
            self.silent_frames += 1
            return _silence_packet(codec), codec.frame_samples
        rate = self.encode_rate
        if self._encoder is None:
            self._encoder = _encoder(codec, rate, self._complexity)
            self._resampler = None if rate == self.source_rate else Resampler(rate)
            self._fifo = np.zeros(0, dtype=np.int16)
            self._encoder_pts = 0
        n = rate * FRAME_MS // 1000
        if self._resampler is None:
            frame_samples = samples  # one frame at the rate the encoder takes: as it is
        else:
            out = self._resampler.resample_pcm(samples, self.source_rate)
            fifo = np.concatenate([self._fifo, out]) if self._fifo.size else out
            if fifo.size < n:
                # Only while the resampler's filter fills (its delay is under 1 ms): pad once.
                fifo = np.concatenate([np.zeros(n - fifo.size, dtype=np.int16), fifo])
            frame_samples, self._fifo = fifo[:n], fifo[n:]
        packets = self._encoder.encode(pcm_frame(frame_samples, rate, self._encoder_pts))
        self._encoder_pts += n
        if len(packets) != 1:
            raise MediaStreamError(f"{codec.av_codec} returned {len(packets)} packets")
        if not had_audio:
            self._encoder = None  # the reply's tail is out: back to cached silence
        return bytes(packets[0]), codec.frame_samples

    def stop(self) -> None:
        super().stop()
        self._stop_ticking()
        self._send = None  # the fast sender holds aiortc's transports: let them go with the call
        if self._parked is not None and not self._parked.done():
            self._parked.set_result(None)
        self.playout.flush()
