"""Audio formats exchanged with providers: PCM16 at some rate, or G.711 at 8 kHz."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Encoding = Literal["pcm16", "pcmu", "pcma"]


@dataclass(frozen=True, slots=True)
class AudioFormat:
    encoding: Encoding
    rate: int

    @property
    def is_g711(self) -> bool:
        return self.encoding != "pcm16"

    @property
    def bytes_per_sample(self) -> int:
        return 2 if self.encoding == "pcm16" else 1

    def bytes_to_ms(self, n: int) -> int:
        return n * 1000 // (self.rate * self.bytes_per_sample)

    def ms_to_bytes(self, ms: int) -> int:
        return ms * self.rate * self.bytes_per_sample // 1000


PCM16_24K = AudioFormat("pcm16", 24000)
PCM16_16K = AudioFormat("pcm16", 16000)
PCMU_8K = AudioFormat("pcmu", 8000)
PCMA_8K = AudioFormat("pcma", 8000)
