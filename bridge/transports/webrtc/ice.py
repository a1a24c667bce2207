"""ICE configuration for the bridge's peer connections.

aiortc gathers host candidates on every interface (except loopback) and has no option to choose
them; the only seam is ``aioice.ice.get_host_addresses``. :func:`restrict_host_addresses`
replaces it process-wide, which is what a deployment wants (offer the public or NAT address,
or 127.0.0.1 for a loopback-only test bed). STUN/TURN servers are explicit: aiortc's default
is a public Google STUN server, which costs 5 s per answer when it is unreachable.

Servers come in two forms: plain URLs (``ice_servers``: STUN, or TURN without credentials) and
:class:`IceServer` entries that carry a username and credential (TURN credentials the bridge
mints, :mod:`bridge.server.turn`). aiortc uses only the *first* STUN URL and the *first* usable
TURN URL it is given, so entries with credentials come first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aioice.ice
from aiortc import RTCConfiguration, RTCIceServer

_ORIGINAL = aioice.ice.get_host_addresses


@dataclass(frozen=True)
class IceServer:
    """One RTCIceServer: its URLs and, for TURN, the credentials."""

    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The shape browsers take in ``RTCConfiguration.iceServers``."""
        entry: dict[str, Any] = {"urls": list(self.urls)}
        if self.username is not None:
            entry["username"] = self.username
        if self.credential is not None:
            entry["credential"] = self.credential
        return entry

    def to_rtc(self) -> RTCIceServer:
        return RTCIceServer(
            urls=list(self.urls), username=self.username, credential=self.credential
        )


def restrict_host_addresses(addresses: Sequence[str]) -> None:
    """Gather host candidates only on ``addresses`` (all interfaces again when empty)."""
    if not addresses:
        aioice.ice.get_host_addresses = _ORIGINAL
        return
    chosen = list(addresses)

    def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in chosen if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    aioice.ice.get_host_addresses = host_addresses


def rtc_configuration(
    ice_servers: Sequence[str], servers: Sequence[IceServer] = ()
) -> RTCConfiguration:
    """Peer configuration with exactly the configured servers (none means host candidates):
    ``servers`` (with credentials) first, then the plain ``ice_servers`` URLs."""
    entries = [server.to_rtc() for server in servers]
    entries += [RTCIceServer(urls=url) for url in ice_servers]
    return RTCConfiguration(iceServers=entries)
