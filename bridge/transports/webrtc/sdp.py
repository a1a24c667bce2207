"""Just enough SDP reading to reject unusable offers with a clear error before aiortc sees them,
and to learn which audio codec aiortc picked for our answer."""

from __future__ import annotations

import re
from dataclasses import dataclass

from bridge.core.errors import BadRequest
from bridge.transports.webrtc.outbound import CODECS, OutboundCodec

_LINE = re.compile(r"^[a-z]=.*$")
# What aiortc can verify a peer's certificate against (RFC 8122 form: hex pairs).
_FINGERPRINT = re.compile(
    r"^a=fingerprint:(sha-256 [0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){31}"
    r"|sha-384 [0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){47}"
    r"|sha-512 [0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){63})$",
    re.IGNORECASE,
)
_STATIC_PT = {"0": "pcmu", "8": "pcma", "9": "g722"}
DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")


DEFAULT_MAX_MESSAGE_SIZE = 65536  # RFC 8841: what a peer that says nothing can take
SETUP_ROLES = ("actpass", "active", "passive", "holdconn")


@dataclass(frozen=True, slots=True)
class MediaSection:
    kind: str
    port: int
    payload_types: tuple[str, ...]
    codecs: tuple[str, ...]  # lower-case encoding names, in the offer's order
    direction: str
    rtpmap: dict[str, str]
    setup: str = "actpass"  # the DTLS role the peer offers (RFC 5763)
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE  # SCTP, for the data channel (0: any)
    mid: str | None = None


def parse_media(sdp: str) -> list[MediaSection]:
    """The m= sections of ``sdp``; :class:`BadRequest` when it is not SDP at all."""
    lines = [line for line in sdp.replace("\r\n", "\n").split("\n") if line.strip()]
    if not lines or lines[0].strip() != "v=0":
        raise BadRequest("sdp must start with 'v=0'", code="invalid_sdp")
    sections: list[MediaSection] = []
    current: dict[str, object] | None = None
    session_direction = "sendrecv"
    session_setup = "actpass"

    def finish() -> None:
        if current is not None:
            pts = current["pts"]
            rtpmap = current["rtpmap"]
            assert isinstance(pts, tuple) and isinstance(rtpmap, dict)
            codecs = tuple(str(rtpmap.get(pt) or _STATIC_PT.get(pt, "")) for pt in pts)
            sections.append(
                MediaSection(
                    kind=str(current["kind"]),
                    port=int(str(current["port"])),
                    payload_types=pts,
                    codecs=tuple(c for c in codecs if c),
                    direction=str(current["direction"] or session_direction),
                    rtpmap=dict(rtpmap),
                    setup=str(current["setup"] or session_setup),
                    max_message_size=int(str(current["max_message_size"])),
                    mid=str(current["mid"]) if current["mid"] is not None else None,
                )
            )

    for raw in lines:
        line = raw.strip()
        if not _LINE.match(line):
            raise BadRequest(f"sdp line is not 'x=value': {line[:60]!r}", code="invalid_sdp")
        if line.startswith("m="):
            finish()
            parts = line[2:].split()
            port = parts[1].split("/")[0] if len(parts) > 1 else ""
            if len(parts) < 3 or not port.isascii() or not port.isdigit() or len(port) > 5:
                raise BadRequest(f"malformed m= line: {line[:60]!r}", code="invalid_sdp")
            rtp = "RTP" in parts[2]
            if rtp and not all(pt.isascii() and pt.isdigit() and int(pt) < 128 for pt in parts[3:]):
                raise BadRequest(f"malformed payload types: {line[:60]!r}", code="invalid_sdp")
            current = {
                "kind": parts[0],
                "port": parts[1].split("/")[0],
                "pts": tuple(parts[3:]),
                "rtpmap": {},
                "direction": None,
                "setup": None,
                "max_message_size": DEFAULT_MAX_MESSAGE_SIZE,
                "mid": None,
            }
        elif line.startswith("a="):
            attr = line[2:]
            if attr in DIRECTIONS:
                if current is None:
                    session_direction = attr
                else:
                    current["direction"] = attr
            elif attr.startswith("rtpmap:") and current is not None:
                pt, _, encoding = attr[len("rtpmap:") :].partition(" ")
                rtpmap = current["rtpmap"]
                assert isinstance(rtpmap, dict)
                rtpmap[pt] = encoding.split("/")[0].lower()
            elif attr.startswith("mid:") and current is not None:
                if current["mid"] is not None:
                    raise BadRequest("an m= section has two a=mid lines", code="invalid_sdp")
                current["mid"] = attr[len("mid:") :].strip()
            elif attr.startswith("setup:"):
                role = attr[len("setup:") :].strip()
                if role not in SETUP_ROLES:
                    raise BadRequest(f"unknown DTLS setup role {role[:20]!r}", code="invalid_sdp")
                if current is None:
                    session_setup = role
                else:
                    current["setup"] = role
            elif attr.startswith("max-message-size:") and current is not None:
                value = attr[len("max-message-size:") :].strip()
                if not value.isascii() or not value.isdigit() or len(value) > 12:
                    raise BadRequest(
                        f"malformed max-message-size {value[:20]!r}", code="invalid_sdp"
                    )
                current["max_message_size"] = int(value)
    finish()
    if not sections:
        raise BadRequest("sdp has no m= section", code="invalid_sdp")
    return sections


@dataclass(frozen=True, slots=True)
class Offer:
    """What the bridge needs to know of a peer's offer."""

    audio: MediaSection
    max_message_size: int  # largest data-channel message the peer takes (0: any)


def check_offer(sdp: object) -> Offer:
    """Validate an offer for a voice call."""
    if not isinstance(sdp, str) or not sdp.strip():
        raise BadRequest("'sdp' must be a non-empty string", code="invalid_sdp")
    sections = parse_media(sdp)
    # WebRTC needs ICE credentials and a DTLS fingerprint; aiortc accepts offers without
    # them and only fails later, in a background task, so refuse them here.
    for attribute in ("a=ice-ufrag:", "a=ice-pwd:", "a=fingerprint:"):
        if attribute not in sdp:
            name = attribute[2:-1]
            raise BadRequest(f"the offer has no {name} attribute", code="invalid_sdp")
    if not any(_FINGERPRINT.match(line.strip()) for line in sdp.splitlines()):
        raise BadRequest(
            "the offer has no usable DTLS fingerprint (sha-256, sha-384 or sha-512)",
            code="invalid_sdp",
        )
    _check_bundle(sdp, sections)
    audio = [m for m in sections if m.kind == "audio" and m.port != 0]
    if not audio:
        raise BadRequest("the offer has no audio m= section", code="no_audio", status=422)
    if len(audio) > 1:
        raise BadRequest(
            "the offer has more than one audio track", code="too_many_tracks", status=422
        )
    section = audio[0]
    if section.direction in ("recvonly", "inactive"):
        raise BadRequest(
            f"the offer's audio is {section.direction}: the bridge needs the peer's audio",
            code="no_audio",
            status=422,
        )
    if not any(c in CODECS for c in section.codecs):
        offered = ", ".join(section.codecs) or "none"
        raise BadRequest(
            f"no supported audio codec (offered: {offered}; supported: opus, PCMU, PCMA)",
            code="no_common_codec",
            status=422,
        )
    data = [m for m in sections if m.kind == "application"]
    limit = data[0].max_message_size if data else DEFAULT_MAX_MESSAGE_SIZE
    return Offer(section, limit)


def _check_bundle(sdp: str, sections: list[MediaSection]) -> None:
    """Every m= section needs its own a=mid (JSEP), and a BUNDLE group may only name those:
    aiortc accepts an offer that breaks this and then fails in a background task."""
    mids = [m.mid for m in sections]
    if any(not mid for mid in mids):
        raise BadRequest("every m= section needs an a=mid", code="invalid_sdp")
    if len(set(mids)) != len(mids):
        raise BadRequest("two m= sections share an a=mid", code="invalid_sdp")
    for line in sdp.splitlines():
        if line.strip().startswith("a=group:BUNDLE"):
            names = line.strip()[len("a=group:BUNDLE") :].split()
            if not names or not set(names) <= set(mids) or len(set(names)) != len(names):
                raise BadRequest(
                    f"malformed BUNDLE group: {line.strip()[:80]!r}", code="invalid_sdp"
                )


def answer_codec(answer_sdp: str) -> OutboundCodec:
    """The codec our sender uses: aiortc sends with the first codec of its answer."""
    for section in parse_media(answer_sdp):
        if section.kind == "audio" and section.codecs:
            codec = CODECS.get(section.codecs[0])
            if codec is not None:
                return codec
    raise BadRequest("no audio codec could be negotiated", code="no_common_codec", status=422)


def payload_types(answer_sdp: str) -> dict[int, str]:
    """Payload type -> codec (lower case) of the answer's audio section."""
    out: dict[int, str] = {}
    for section in parse_media(answer_sdp):
        if section.kind == "audio":
            for pt in section.payload_types:
                if pt.isascii() and pt.isdigit():
                    name = section.rtpmap.get(pt) or _STATIC_PT.get(pt, "")
                    if name:
                        out[int(pt)] = name
            break
    return out
