"""Just enough SDP reading to reject unusable offers with a clear error before aiortc sees them,
and to learn which audio codec aiortc picked for our answer."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .audio.outbound import CODECS, OutboundCodec
from .errors import BadRequest

_LINE = re.compile(r"^[a-z]=.*$")
_STATIC_PT = {"0": "pcmu", "8": "pcma", "9": "g722"}
DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")


@dataclass(frozen=True, slots=True)
class MediaSection:
    kind: str
    port: int
    payload_types: tuple[str, ...]
    codecs: tuple[str, ...]  # lower-case encoding names, in the offer's order
    direction: str
    rtpmap: dict[str, str]


def parse_media(sdp: str) -> list[MediaSection]:
    """The m= sections of ``sdp``; :class:`BadRequest` when it is not SDP at all."""
    lines = [line for line in sdp.replace("\r\n", "\n").split("\n") if line.strip()]
    if not lines or lines[0].strip() != "v=0":
        raise BadRequest("sdp must start with 'v=0'", code="invalid_sdp")
    sections: list[MediaSection] = []
    current: dict[str, object] | None = None
    session_direction = "sendrecv"

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
                )
            )

    for raw in lines:
        line = raw.strip()
        if not _LINE.match(line):
            raise BadRequest(f"sdp line is not 'x=value': {line[:60]!r}", code="invalid_sdp")
        if line.startswith("m="):
            finish()
            parts = line[2:].split()
            if len(parts) < 3 or not parts[1].split("/")[0].isdigit():
                raise BadRequest(f"malformed m= line: {line[:60]!r}", code="invalid_sdp")
            current = {
                "kind": parts[0],
                "port": parts[1].split("/")[0],
                "pts": tuple(parts[3:]),
                "rtpmap": {},
                "direction": None,
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
    finish()
    if not sections:
        raise BadRequest("sdp has no m= section", code="invalid_sdp")
    return sections


def check_offer(sdp: object) -> MediaSection:
    """Validate an offer for a voice call; returns its audio section."""
    if not isinstance(sdp, str) or not sdp.strip():
        raise BadRequest("'sdp' must be a non-empty string", code="invalid_sdp")
    sections = parse_media(sdp)
    # WebRTC needs ICE credentials and a DTLS fingerprint; aiortc accepts offers without
    # them and only fails later, in a background task, so refuse them here.
    for attribute in ("a=ice-ufrag:", "a=ice-pwd:", "a=fingerprint:"):
        if attribute not in sdp:
            name = attribute[2:-1]
            raise BadRequest(f"the offer has no {name} attribute", code="invalid_sdp")
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
    return section


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
                if pt.isdigit():
                    name = section.rtpmap.get(pt) or _STATIC_PT.get(pt, "")
                    if name:
                        out[int(pt)] = name
            break
    return out
