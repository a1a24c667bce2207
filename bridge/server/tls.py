"""HTTPS for the bridge: browsers give the microphone only to secure origins, so a phone or
another machine on the LAN needs ``https://``.

``--tls-cert``/``--tls-key`` serve a certificate you have; ``--tls self-signed`` makes one
(ECDSA P-256, valid 30 days) for this machine's LAN address, ``localhost`` and the
``--host``, held in memory only (the files it passes through are removed at once), and the
bridge prints the URL to open. Browsers warn
once about a self-signed certificate; accept it and the page works, microphone included.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import ssl
import tempfile

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bridge.server.config import Settings

VALID_DAYS = 30


def lan_address() -> str | None:
    """The address other machines on the LAN reach this one at (the default route's), or
    None on a box with no route (nothing is sent: a UDP connect only picks the interface)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: never routed anywhere real
            address = str(probe.getsockname()[0])
        except OSError:
            return None
    return None if ipaddress.ip_address(address).is_loopback else address


def self_signed(folder: str, names: list[str]) -> tuple[str, str]:
    """A certificate and key for ``names`` (addresses or host names), written to ``folder``;
    returns their paths."""
    key = ec.generate_private_key(ec.SECP256R1())
    alternatives: list[x509.GeneralName] = []
    for name in dict.fromkeys(names):
        try:
            alternatives.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alternatives.append(x509.DNSName(name))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rtc-bridge")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = os.path.join(folder, "tls-cert.pem"), os.path.join(folder, "tls-key.pem")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return cert_path, key_path


def context(settings: Settings) -> tuple[ssl.SSLContext | None, str | None]:
    """The server's TLS context (None: plain HTTP) and, for a self-signed certificate, the
    URL another machine should open."""
    if settings.tls_cert:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(settings.tls_cert, settings.tls_key)
        return ctx, None
    if settings.tls != "self-signed":
        return None, None
    lan = lan_address()
    names = ["localhost", "127.0.0.1", *([lan] if lan else [])]
    if settings.host not in ("0.0.0.0", "::"):
        names.append(settings.host)
    # Written only for load_cert_chain (it reads files), then removed: the key lives in memory.
    with tempfile.TemporaryDirectory(prefix="rtc-bridge-tls-") as folder:
        cert, key = self_signed(folder, names)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert, key)
    shown = settings.host if settings.host not in ("0.0.0.0", "::") else (lan or "localhost")
    return ctx, f"https://{shown}:{settings.port}/"
