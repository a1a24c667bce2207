"""G.711 mu-law and A-law in numpy (the classic Sun g711.c algorithms, bit-exact).

Telephony peers send G.711; OpenAI accepts it natively, so the bridge re-encodes aiortc's
decoded 8 kHz samples instead of resampling, and passes provider G.711 straight to the peer.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

U8 = npt.NDArray[np.uint8]
I16 = npt.NDArray[np.int16]

ULAW_SILENCE = 0xFF
ALAW_SILENCE = 0xD5
_SEG_U = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF], dtype=np.int32)
_SEG_A = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF], dtype=np.int32)


def _ulaw_encode(samples: I16) -> U8:
    s = samples.astype(np.int32) >> 2
    mask = np.where(s < 0, 0x7F, 0xFF)
    s = np.minimum(np.abs(s), 8159) + 0x21
    seg = np.searchsorted(_SEG_U, s)
    code = np.where(seg >= 8, 0x7F, (seg << 4) | ((s >> (np.minimum(seg, 7) + 1)) & 0x0F))
    return ((code ^ mask) & 0xFF).astype(np.uint8)


def _ulaw_decode_one(u8: int) -> int:
    u = ~u8 & 0xFF
    exp, man = (u >> 4) & 7, u & 0x0F
    s = (((man << 3) + 0x84) << exp) - 0x84
    return -s if u & 0x80 else s


def _alaw_encode(samples: I16) -> U8:
    s = samples.astype(np.int32) >> 3
    negative = s < 0
    mask = np.where(negative, 0x55, 0xD5)
    s = np.where(negative, -s - 1, s)
    seg = np.searchsorted(_SEG_A, s)
    big = seg >= 8
    seg_c = np.minimum(seg, 7)
    mant = np.where(seg_c < 2, s >> 1, s >> np.maximum(seg_c, 1)) & 0x0F
    code = np.where(big, 0x7F, (seg_c << 4) | mant)
    return ((code ^ mask) & 0xFF).astype(np.uint8)


def _alaw_decode_one(a8: int) -> int:
    a = a8 ^ 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    if seg == 0:
        t += 8
    elif seg == 1:
        t += 0x108
    else:
        t = (t + 0x108) << (seg - 1)
    return t if a & 0x80 else -t


_ULAW_TABLE = np.array([_ulaw_decode_one(i) for i in range(256)], dtype=np.int16)
_ALAW_TABLE = np.array([_alaw_decode_one(i) for i in range(256)], dtype=np.int16)


def encode(samples: I16, law: str) -> bytes:
    """PCM16 samples -> G.711 bytes; ``law`` is ``pcmu`` or ``pcma``."""
    return (_ulaw_encode(samples) if law == "pcmu" else _alaw_encode(samples)).tobytes()


def decode(data: bytes, law: str) -> I16:
    """G.711 bytes -> PCM16 samples."""
    table = _ULAW_TABLE if law == "pcmu" else _ALAW_TABLE
    result: I16 = table[np.frombuffer(data, dtype=np.uint8)]
    return result


def silence_byte(law: str) -> int:
    return ULAW_SILENCE if law == "pcmu" else ALAW_SILENCE
