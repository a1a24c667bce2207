"""A direct libopus decoder: one RTP payload in, PCM16 mono at the provider's rate out.

PyAV's ``libopus`` decoder always produces 48 kHz (FFmpeg ignores the rate asked for), so the
inbound path used to decode at 48 kHz and resample to 24 or 16 kHz: about 125 µs per 20 ms
packet, mostly object churn and the resampler. libopus itself decodes straight to any of 8,
12, 16, 24 or 48 kHz, mono (stereo packets are downmixed), in about 25 µs. This module calls
it through ``ctypes``: the system's ``libopus`` or, failing that, the copy PyAV's wheel ships.
:func:`decoder` returns None when neither loads; callers then keep the PyAV path.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import glob
import logging
import os
from typing import Any

import numpy as np

from bridge.audio.resample import PCM16

log = logging.getLogger(__name__)

RATES = (8000, 12000, 16000, 24000, 48000)  # what libopus decodes to directly
MAX_FRAME_MS = 120  # the longest Opus packet


class OpusError(ValueError):
    """libopus refused a packet (a negative return code)."""


@functools.cache
def _library() -> Any:
    """libopus with the two calls typed, or None."""
    candidates = [ctypes.util.find_library("opus")]
    try:
        import av

        bundled = os.path.join(os.path.dirname(os.path.dirname(av.__file__)), "av.libs")
        candidates += sorted(glob.glob(os.path.join(bundled, "libopus*.so*")))
    except ImportError:  # pragma: no cover - av is a dependency
        pass
    for name in candidates:
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name)
            lib.opus_decoder_create.restype = ctypes.c_void_p
            lib.opus_decoder_create.argtypes = [
                ctypes.c_int32,
                ctypes.c_int,
                ctypes.POINTER(ctypes.c_int),
            ]
            lib.opus_decode.restype = ctypes.c_int
            lib.opus_decode.argtypes = [
                ctypes.c_void_p,
                ctypes.c_char_p,
                ctypes.c_int32,
                ctypes.c_void_p,
                ctypes.c_int,
                ctypes.c_int,
            ]
            lib.opus_decoder_destroy.restype = None
            lib.opus_decoder_destroy.argtypes = [ctypes.c_void_p]
        except (OSError, AttributeError):
            continue
        return lib
    log.warning("libopus not found: inbound Opus is decoded by PyAV and resampled (more CPU)")
    return None


class OpusDecoder:
    """One stream's decoder (Opus keeps state between packets); mono PCM16 at ``rate``."""

    def __init__(self, lib: Any, rate: int) -> None:
        if rate not in RATES:
            raise ValueError(f"libopus decodes to {RATES}, not {rate}")
        error = ctypes.c_int()
        handle = lib.opus_decoder_create(rate, 1, ctypes.byref(error))
        if not handle or error.value != 0:
            raise OpusError(f"opus_decoder_create failed ({error.value})")
        self.rate = rate
        self._lib = lib
        self._handle: int | None = handle
        self._out = np.zeros(rate * MAX_FRAME_MS // 1000, dtype=np.int16)
        self._address = self._out.ctypes.data

    def decode(self, payload: bytes) -> PCM16:
        """The packet's samples (a fresh array; the decoder's buffer is reused)."""
        if self._handle is None:
            raise OpusError("decoder closed")
        if not payload:
            raise OpusError("empty Opus packet")
        n = self._lib.opus_decode(
            self._handle, payload, len(payload), self._address, self._out.size, 0
        )
        if n < 0:
            raise OpusError(f"libopus refused the packet ({n})")
        return self._out[:n].copy()

    def close(self) -> None:
        if self._handle is not None:
            self._lib.opus_decoder_destroy(self._handle)
            self._handle = None

    def __del__(self) -> None:
        self.close()


def decoder(rate: int) -> OpusDecoder | None:
    """A direct decoder to ``rate``, or None when libopus is missing or cannot make it."""
    lib = _library()
    if lib is None or rate not in RATES:
        return None
    return OpusDecoder(lib, rate)
