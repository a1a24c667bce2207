"""Stateful resampling to and from PCM16 mono.

One :class:`Resampler` belongs to one stream and one direction for the stream's whole life:
resampling 20 ms chunks independently would reset the filter at every chunk edge and click.
The underlying ``av.AudioResampler`` only accepts frames that match the first one it saw, so a
change of input format, layout or rate (e.g. a codec switch from Opus to PCMU) rebuilds it.
"""

from __future__ import annotations

import functools
from fractions import Fraction
from typing import cast

import av
import numpy as np
import numpy.typing as npt

PCM16 = npt.NDArray[np.int16]


@functools.cache
def time_base(rate: int) -> Fraction:
    """``1/rate``, made once: a Fraction per 20 ms frame shows up in profiles."""
    return Fraction(1, rate)


def pcm_frame(samples: PCM16, rate: int, pts: int) -> av.AudioFrame:
    """An ``s16`` mono frame with rate, pts and time base set (PyAV defaults them to 0/None)."""
    frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = rate
    frame.pts = pts
    frame.time_base = time_base(rate)
    return frame


class Resampler:
    """Converts a stream of frames (any format, layout, rate) to PCM16 mono at ``rate``."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.rebuilds = 0
        self._resampler: av.AudioResampler | None = None
        self._input_key: tuple[str, str, int] | None = None
        self._passthrough = False
        self._pts = 0

    def _prepare(self, frame: av.AudioFrame) -> None:
        key = (frame.format.name, frame.layout.name, frame.sample_rate)
        if key == self._input_key:
            return
        if self._input_key is not None:
            self.rebuilds += 1
        self._input_key = key
        self._passthrough = key == ("s16", "mono", self.rate)
        self._resampler = (
            None
            if self._passthrough
            else av.AudioResampler(format="s16", layout="mono", rate=self.rate)
        )

    def resample(self, frame: av.AudioFrame) -> PCM16:
        """Resample one frame; the output can be shorter or empty while the filter fills."""
        self._prepare(frame)
        if self._passthrough:
            out = cast(PCM16, frame.to_ndarray().reshape(-1))
            return out
        assert self._resampler is not None
        if frame.pts is None or frame.time_base is None:
            # The resampler wants timestamps; make them contiguous in the frame's own rate.
            frame.pts = self._pts
            frame.time_base = time_base(frame.sample_rate)
        self._pts = int(frame.pts) + frame.samples
        frames = self._resampler.resample(frame)
        if not frames:
            return np.zeros(0, dtype=np.int16)
        if len(frames) == 1:
            single = cast(PCM16, frames[0].to_ndarray().reshape(-1))
            return single
        return np.concatenate([f.to_ndarray().reshape(-1) for f in frames])

    def resample_pcm(self, pcm: PCM16, rate: int) -> PCM16:
        """Resample PCM16 mono samples at ``rate``, continuing the stream's timeline."""
        if rate == self.rate:
            return pcm
        return self.resample(pcm_frame(pcm, rate, self._pts))


def split(samples: PCM16, size: int) -> list[bytes]:
    """Little-endian bytes in pieces of at most ``size`` samples; nothing is held back.

    Holding a remainder to make every piece exactly 20 ms would delay most of each piece by
    up to a frame (the resampler's first output is a little short); providers take any size.
    """
    if size <= 0:
        raise ValueError("size must be positive")
    data = samples.astype("<i2", copy=False)
    return [data[i : i + size].tobytes() for i in range(0, data.size, size)]
