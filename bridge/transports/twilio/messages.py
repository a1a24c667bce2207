"""The Media Streams wire format: Twilio's JSON messages parsed totally, ours built.

:func:`parse` turns one text message into a typed message or raises :class:`Malformed` with a
short reason (the stream counts it and goes on); it never raises anything else, whatever the
input: wrong JSON, wrong types, deep nesting, bad base64. Media payloads are decoded strictly
(characters outside the base64 alphabet, or bad padding, are malformed, not silently skipped).
Only the fields the bridge uses are read; extra fields are ignored, as Twilio may add some.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

MULAW = "audio/x-mulaw"
MULAW_RATE = 8000
MAX_SID_CHARS = 64
MAX_MARK_NAME_CHARS = 256
# Custom parameters the bridge reads from ``start`` (the webhook's query becomes them).
STREAM_PARAMETERS = ("provider", "model", "instructions", "voice")


class Malformed(Exception):
    """A message that cannot be used; ``reason`` is short and safe to log and count, ``event``
    is the message's event when it has one."""

    def __init__(self, reason: str, event: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.event = event


@dataclass(frozen=True, slots=True)
class Connected:
    protocol: str


@dataclass(frozen=True, slots=True)
class Start:
    stream_sid: str
    call_sid: str
    encoding: object  # as sent: checked by :meth:`format_problem`, not here
    sample_rate: object
    channels: object
    parameters: dict[str, str] = field(default_factory=dict)

    def format_problem(self) -> str | None:
        """Why the media format is not the one Twilio documents, or None when it is."""
        numbers = (self.sample_rate, self.channels)
        if self.encoding == MULAW and all(type(n) is int for n in numbers):
            if numbers == (MULAW_RATE, 1):
                return None
        if self.encoding == MULAW:
            return f"expected {MULAW_RATE} Hz mono, got {_short(numbers)}"
        return f"expected {MULAW} {MULAW_RATE} Hz mono, got {_short(self.encoding)}"


@dataclass(frozen=True, slots=True)
class Media:
    audio: bytes  # mu-law 8 kHz, decoded from the payload
    track: str


@dataclass(frozen=True, slots=True)
class Dtmf:
    digit: str


@dataclass(frozen=True, slots=True)
class Mark:
    name: str


@dataclass(frozen=True, slots=True)
class Stop:
    pass


@dataclass(frozen=True, slots=True)
class Unknown:
    event: str


Message = Connected | Start | Media | Dtmf | Mark | Stop | Unknown


def parse(text: str) -> Message:
    """One message from Twilio; :class:`Malformed` when it can't be used."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise Malformed("not JSON") from None
    if not isinstance(data, dict):
        raise Malformed("not a JSON object")
    event = data.get("event")
    if not isinstance(event, str):
        raise Malformed("no event")
    try:
        return _typed(event, data)
    except Malformed as exc:
        raise Malformed(exc.reason, event) from None


def _typed(event: str, data: dict[str, Any]) -> Message:
    match event:
        case "media":
            return _media(_object(data, "media"))
        case "mark":
            return Mark(_string(_object(data, "mark"), "name", MAX_MARK_NAME_CHARS))
        case "start":
            return _start(data)
        case "dtmf":
            return Dtmf(_string(_object(data, "dtmf"), "digit", 8))
        case "connected":
            protocol = data.get("protocol")
            return Connected(protocol if isinstance(protocol, str) else "")
        case "stop":
            return Stop()
    return Unknown(_short(event))


def _media(media: dict[str, Any]) -> Media:
    payload = media.get("payload")
    if not isinstance(payload, str):
        raise Malformed("media without a payload string")
    try:
        audio = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise Malformed("media payload is not base64") from None
    if not audio:
        raise Malformed("empty media payload")
    track = media.get("track", "inbound")
    return Media(audio, track if isinstance(track, str) else "")


def _start(data: dict[str, Any]) -> Start:
    start = _object(data, "start")
    stream_sid = start.get("streamSid", data.get("streamSid"))
    if not isinstance(stream_sid, str) or not 0 < len(stream_sid) <= MAX_SID_CHARS:
        raise Malformed("start without a streamSid")
    call_sid = start.get("callSid", "")
    media_format = start.get("mediaFormat")
    if not isinstance(media_format, dict):
        raise Malformed("start without a mediaFormat")
    custom = start.get("customParameters", {})
    if not isinstance(custom, dict) or not all(isinstance(v, str) for v in custom.values()):
        raise Malformed("customParameters must be an object of strings")
    return Start(
        stream_sid=stream_sid,
        call_sid=call_sid[:MAX_SID_CHARS] if isinstance(call_sid, str) else "",
        encoding=media_format.get("encoding"),
        sample_rate=media_format.get("sampleRate"),
        channels=media_format.get("channels"),
        parameters={k: v for k, v in custom.items() if k in STREAM_PARAMETERS},
    )


def _object(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    if not isinstance(value, dict):
        raise Malformed(f"{_short(data.get('event'))} without a {key} object")
    return value


def _string(data: dict[str, Any], key: str, limit: int) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not 0 < len(value) <= limit:
        raise Malformed(f"{key} must be a string of 1 to {limit} characters")
    return value


def _short(value: object, limit: int = 40) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


# -- what the bridge sends -------------------------------------------------------------------


def media(stream_sid: str, audio: bytes) -> str:
    payload = base64.b64encode(audio).decode("ascii")
    return _dump({"event": "media", "streamSid": stream_sid, "media": {"payload": payload}})


def mark(stream_sid: str, name: str) -> str:
    return _dump({"event": "mark", "streamSid": stream_sid, "mark": {"name": name}})


def clear(stream_sid: str) -> str:
    return _dump({"event": "clear", "streamSid": stream_sid})


def _dump(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"))
