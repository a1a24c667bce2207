"""DTLS: the role the bridge takes and the cipher suites it offers, so that any conforming peer
connects whatever its certificate type.

aiortc makes an ECDSA certificate for every connection and, as a DTLS *client*, offers only
ECDHE-ECDSA suites. A peer with an RSA certificate acting as the DTLS *server* (GStreamer's
webrtcbin, many SIP-to-WebRTC gateways) then fails the handshake with "no shared cipher".

* When the peer offers ``a=setup:actpass`` (it lets us choose, as browsers and webrtcbin do),
  the bridge answers ``a=setup:passive`` and is the DTLS **server**: the suite then follows the
  bridge's own ECDSA certificate, and the peer's certificate type no longer matters.
* When the peer insists on being the server (``a=setup:passive``), the bridge is the client
  and also offers the ECDHE-RSA suites (:func:`install`), so an RSA server certificate works.

Both reach into aiortc 1.16 internals (the transport's role before the answer is made, and its
SSL context factory); the version is pinned in ``pyproject.toml``.
"""

from __future__ import annotations

from typing import Any

from aiortc import RTCPeerConnection
from aiortc.rtcdtlstransport import RTCCertificate

_ECDSA = (
    b"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305:"
    b"ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA"
)
_RSA = (
    b"ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-CHACHA20-POLY1305:"
    b"ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES256-SHA"
)
CIPHERS = _ECDSA + b":" + _RSA

_installed = False


def install() -> None:
    """Offer the ECDHE-RSA suites too (idempotent)."""
    global _installed
    if _installed:
        return
    original = RTCCertificate._create_ssl_context

    def create_ssl_context(self: RTCCertificate, srtp_profiles: Any) -> Any:
        ctx = original(self, srtp_profiles)
        ctx.set_cipher_list(CIPHERS)
        return ctx

    RTCCertificate._create_ssl_context = create_ssl_context  # type: ignore[method-assign]
    _installed = True


def answer_as_server(pc: RTCPeerConnection, offered_setup: str) -> None:
    """After ``setRemoteDescription(offer)``: take the server role when the peer let us choose.

    aiortc would answer ``active``; a transport whose role is set before ``createAnswer`` keeps
    it, so the answer says ``passive``.
    """
    if offered_setup != "actpass":
        return
    transports = [t.receiver.transport for t in pc.getTransceivers()]
    if pc.sctp is not None:
        transports.append(pc.sctp.transport)
    for transport in transports:
        if transport is not None and transport._role == "auto":
            transport._set_role("server")
