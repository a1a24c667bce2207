"""What the benchmark's peer servers (``pipecat_echo.py``, ``fastrtc_echo.py``) share.

They run with their own virtualenvs as plain scripts (``python benchmarks/<name>.py``), so this
sits beside them and needs nothing but the standard library and aioice (which every aiortc
install has); it imports nothing of the bridge.
"""

from __future__ import annotations

import resource

import aioice.ice


def loopback_host_candidates() -> None:
    """Gather ICE host candidates on 127.0.0.1 only (aiortc skips loopback otherwise and
    has no option for it: ``aioice.ice.get_host_addresses`` is the only seam)."""

    def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return ["127.0.0.1"] if use_ipv4 else []

    aioice.ice.get_host_addresses = host_addresses


def stats() -> dict[str, float]:
    """``GET /stats`` as the load generator reads it: this process's CPU seconds and RSS."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    rss = 0
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
    return {"cpu_seconds": usage.ru_utime + usage.ru_stime, "rss_bytes": rss}
