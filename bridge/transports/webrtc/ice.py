"""ICE configuration for the bridge's peer connections.

aiortc gathers host candidates on every interface (except loopback) and has no option to choose
them; the only seam is ``aioice.ice.get_host_addresses``. :func:`restrict_host_addresses`
replaces it process-wide, which is what a deployment wants (offer the public or NAT address,
or 127.0.0.1 for a loopback-only test bed). STUN/TURN servers are explicit: aiortc's default
is a public Google STUN server, which costs 5 s per answer when it is unreachable.
"""

from __future__ import annotations

from collections.abc import Sequence

import aioice.ice
from aiortc import RTCConfiguration, RTCIceServer

_ORIGINAL = aioice.ice.get_host_addresses


def restrict_host_addresses(addresses: Sequence[str]) -> None:
    """Gather host candidates only on ``addresses`` (all interfaces again when empty)."""
    if not addresses:
        aioice.ice.get_host_addresses = _ORIGINAL
        return
    chosen = list(addresses)

    def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in chosen if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    aioice.ice.get_host_addresses = host_addresses


def rtc_configuration(ice_servers: Sequence[str]) -> RTCConfiguration:
    """Peer configuration with exactly the configured servers (none means host candidates)."""
    return RTCConfiguration(iceServers=[RTCIceServer(urls=url) for url in ice_servers])
