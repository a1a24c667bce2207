"""Twilio's 8 kHz mu-law to and from the provider's formats, one converter per direction.

A G.711 mu-law provider (OpenAI asked for ``pcmu``) gets the caller's bytes untouched and its
replies go to the caller untouched. Otherwise each direction decodes or encodes by table and
resamples with its own stateful :class:`~bridge.audio.resample.Resampler` for the whole call:
resampling 20 ms chunks independently would reset the filter at every chunk edge.
"""

from __future__ import annotations

import numpy as np

from bridge.audio import g711
from bridge.audio.format import PCMU_8K, AudioFormat
from bridge.audio.resample import Resampler

TWILIO_FORMAT = PCMU_8K


class Uplink:
    """The caller's mu-law 8 kHz -> the provider's input format."""

    def __init__(self, target: AudioFormat) -> None:
        self.target = target
        self.passthrough = target == TWILIO_FORMAT
        self._resampler = Resampler(target.rate)

    def convert(self, ulaw: bytes) -> bytes:
        """Provider audio for one payload; empty while the resampler's filter fills."""
        if self.passthrough:
            return ulaw
        pcm = g711.decode(ulaw, TWILIO_FORMAT.encoding)
        if self.target.is_g711:  # A-law: same rate, another table
            return g711.encode(pcm, self.target.encoding)
        out = self._resampler.resample_pcm(pcm, TWILIO_FORMAT.rate)
        return out.astype("<i2", copy=False).tobytes()


class Downlink:
    """The provider's reply audio -> mu-law 8 kHz for the caller."""

    def __init__(self, source: AudioFormat) -> None:
        self.source = source
        self.passthrough = source == TWILIO_FORMAT
        self._resampler = Resampler(TWILIO_FORMAT.rate)
        self._carry = b""  # half a PCM16 sample, when a chunk ended inside one
        self.odd_chunks = 0

    def convert(self, data: bytes) -> bytes:
        if self.passthrough:
            return data
        if self.source.is_g711:
            return g711.encode(g711.decode(data, self.source.encoding), TWILIO_FORMAT.encoding)
        if self._carry or len(data) % 2:
            self.odd_chunks += len(data) % 2
            data = self._carry + data
            cut = len(data) // 2 * 2
            data, self._carry = data[:cut], data[cut:]
        if not data:
            return b""
        pcm = np.frombuffer(data, dtype="<i2").astype(np.int16, copy=False)
        out = self._resampler.resample_pcm(pcm, self.source.rate)
        return g711.encode(out, TWILIO_FORMAT.encoding) if out.size else b""

    def reset(self) -> None:
        """Forget a cut reply: none of its tail may leak into the next one."""
        self._resampler = Resampler(TWILIO_FORMAT.rate)
        self._carry = b""
