"""Process-wide measurements of the audio path, for operators and benchmarks (``GET /stats``).

Cheap on purpose: a bounded deque append per sample, percentiles only when asked.
"""

from __future__ import annotations

import os
import resource
from collections import deque
from typing import Any

LATE_FRAME_MS = 20.0  # an outbound frame this far behind its schedule counts as late
_KEEP = 50_000


def _percentiles(samples: deque[float]) -> dict[str, float | None]:
    if not samples:
        return {"count": 0, "p50": None, "p99": None, "max": None}
    ordered = sorted(samples)
    n = len(ordered)

    def at(q: float) -> float:
        return round(ordered[min(int(q * n), n - 1)], 3)

    return {"count": n, "p50": at(0.50), "p99": at(0.99), "max": round(ordered[-1], 3)}


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class Metrics:
    """Uplink and downlink latency inside the bridge, and outbound frame punctuality."""

    def __init__(self) -> None:
        self.uplink_ms: deque[float] = deque(maxlen=_KEEP)
        self.downlink_ms: deque[float] = deque(maxlen=_KEEP)
        self.frames = 0
        self.late_frames = 0

    def uplink(self, ms: float) -> None:
        """A decoded inbound frame was handed to the provider ``ms`` after ``recv()``."""
        self.uplink_ms.append(ms)

    def downlink(self, ms: float) -> None:
        """Provider audio reached an idle track and left in a packet ``ms`` later."""
        self.downlink_ms.append(ms)

    def frame(self, lateness_ms: float) -> None:
        self.frames += 1
        if lateness_ms > LATE_FRAME_MS:
            self.late_frames += 1

    def reset(self) -> None:
        self.uplink_ms.clear()
        self.downlink_ms.clear()
        self.frames = self.late_frames = 0

    def snapshot(self) -> dict[str, Any]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "pid": os.getpid(),
            "uplink_ms": _percentiles(self.uplink_ms),
            "downlink_ms": _percentiles(self.downlink_ms),
            "outbound_frames": self.frames,
            "late_frames": self.late_frames,
            "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3),
            "rss_bytes": _rss_bytes(),
        }
