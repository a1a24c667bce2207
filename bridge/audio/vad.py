"""A small energy-based voice activity detector.

Used by the embedded echo provider and by the provider emulators: it is deterministic and
cheap, which is what tests need (real providers run their own, much better VAD).
"""

from __future__ import annotations

import math
from enum import Enum

import numpy as np


class VadEvent(Enum):
    START = "start"
    STOP = "stop"


def level_dbfs(pcm: bytes) -> float:
    """RMS level of PCM16 LE samples in dB relative to full scale (-inf for digital silence)."""
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
    if not samples.size:
        return -math.inf
    rms = math.sqrt(float(np.dot(samples, samples)) / samples.size)
    return 20 * math.log10(rms / 32768) if rms > 0 else -math.inf


class EnergyVad:
    """Speech starts after ``start_ms`` above the threshold and stops after ``stop_ms`` below."""

    def __init__(
        self, rate: int, *, threshold_dbfs: float = -45.0, start_ms: int = 60, stop_ms: int = 500
    ) -> None:
        self.rate = rate
        self.threshold_dbfs = threshold_dbfs
        self.start_ms = start_ms
        self.stop_ms = stop_ms
        self.speaking = False
        self._voiced_ms = 0.0
        self._silent_ms = 0.0

    def reset(self) -> None:
        """Forget the current utterance (its end was signalled another way)."""
        self.speaking = False
        self._voiced_ms = self._silent_ms = 0.0

    def process(self, pcm: bytes) -> VadEvent | None:
        """Feed one chunk of PCM16 LE mono; returns a transition when one happens."""
        ms = len(pcm) / 2 * 1000 / self.rate
        if level_dbfs(pcm) >= self.threshold_dbfs:
            self._voiced_ms += ms
            self._silent_ms = 0.0
            if not self.speaking and self._voiced_ms >= self.start_ms:
                self.speaking = True
                return VadEvent.START
        else:
            self._silent_ms += ms
            self._voiced_ms = 0.0
            if self.speaking and self._silent_ms >= self.stop_ms:
                self.speaking = False
                return VadEvent.STOP
        return None
