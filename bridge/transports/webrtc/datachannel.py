"""The ``events`` data channel's codec: client messages in, bounded JSON events out.

Everything a peer sends is outside input: a message is parsed here into a JSON object with a
``type`` or refused with a :class:`~bridge.errors.BadRequest` (size counted in bytes, nesting
bounded), and nothing in it can raise anything else. Everything the bridge sends must fit the
peer's SCTP ``max-message-size``: :func:`encode` splits long text deltas into several events,
cuts a long final text with a marker, and replaces any other oversized event by a small
``event_too_large`` error, so aiortc never refuses a send (which would end the call).

aiortc itself decodes string messages as UTF-8 inside its SCTP receive loop, where a decoding
error would end the whole transport: :func:`install_guard` drops such a message instead.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiortc.rtcsctptransport import RTCSctpTransport

from bridge.core import commands as cmd
from bridge.core.errors import BadRequest

log = logging.getLogger(__name__)

MAX_DEPTH = 32  # nothing a client sends needs more
CUT_MARKER = "…[cut]"
SHOWN_CHARS = 64  # of client input quoted back in an error


def parse(message: str | bytes, max_bytes: int) -> dict[str, Any]:
    """One client message as a JSON object with a string ``type``."""
    if isinstance(message, bytes):
        raise BadRequest("messages must be JSON text, not binary", code="invalid_event")
    size = len(message.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise BadRequest(
            f"message of {size} bytes is over the limit of {max_bytes}", code="invalid_event"
        )
    if _too_deep(message):
        raise BadRequest(f"message is nested deeper than {MAX_DEPTH} levels", code="invalid_json")
    try:
        data = json.loads(message)
    except (ValueError, RecursionError):
        raise BadRequest("message is not valid JSON", code="invalid_json") from None
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise BadRequest("message must be an object with a 'type'", code="invalid_event")
    return data


def to_command(data: dict[str, Any], max_text_chars: int) -> cmd.Command:
    """A parsed client message as a conversation command (:class:`BadRequest` otherwise).

    ``session.update`` (fields of the session), ``text`` (a typed message; ``turn_complete``
    false only adds it to the turn) and ``interrupt`` (stop the reply now).
    """
    kind = data["type"]
    if kind == "session.update":
        session = data.get("session")
        if not isinstance(session, dict):
            raise BadRequest("'session' must be an object", code="invalid_session")
        return cmd.UpdateSession(session)
    if kind == "text":
        text = data.get("text")
        if not isinstance(text, str) or not text.strip():
            raise BadRequest("'text' must be a non-empty string", code="invalid_event")
        if len(text) > max_text_chars:
            raise BadRequest(f"'text' is over {max_text_chars} characters", code="invalid_event")
        turn_complete = data.get("turn_complete", True)
        if not isinstance(turn_complete, bool):
            raise BadRequest("'turn_complete' must be true or false", code="invalid_event")
        return cmd.SendText(text, turn_complete)
    if kind == "interrupt":
        return cmd.Interrupt()
    raise BadRequest(
        f"unknown event type {shown(kind)} (expected session.update, text or interrupt)",
        code="unknown_event",
    )


def _too_deep(text: str) -> bool:
    """Cheap bound on nesting before json parses it (json recurses per level)."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return False  # the usual case, counted in C
    depth = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return True
        elif char in "]}":
            depth -= 1
    return False


def shown(value: object) -> str:
    """Client input quoted in an error message: bounded, never the whole of it."""
    text = repr(value) if not isinstance(value, str) else value
    return repr(text[:SHOWN_CHARS] + ("…" if len(text) > SHOWN_CHARS else ""))


def dumps(wire: dict[str, Any]) -> str:
    return json.dumps(wire, separators=(",", ":"), ensure_ascii=False)


def _size(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


# Text fields that may be split into several events ("delta" semantics) or only cut.
_SPLIT = {"text": "delta"}
_CUT = {"transcript": "text", "error": None}


def encode(wire: dict[str, Any], limit: int) -> list[str]:
    """``wire`` as one or more messages of at most ``limit`` bytes each."""
    text = dumps(wire)
    if _size(text) <= limit:
        return [text]
    kind = wire.get("type")
    if kind == "transcript" and not wire.get("final"):
        return _split(wire, "text", limit)
    if kind in _SPLIT:
        return _split(wire, _SPLIT[kind], limit)
    if kind == "transcript":
        return [_cut(wire, ("text",), limit)]
    if kind == "error":
        return [_cut(wire, ("error", "message"), limit)]
    notice = {
        "type": "error",
        "error": {
            "code": "event_too_large",
            "message": f"a {shown(kind)} event of {_size(text)} bytes was dropped: the peer "
            f"takes at most {limit} bytes per message",
        },
    }
    return [dumps(notice)]


def _split(wire: dict[str, Any], field: str, limit: int) -> list[str]:
    value = str(wire.get(field, ""))
    room = limit - _size(dumps({**wire, field: ""}))
    step = max(room // 6, 1)  # a character is at most 6 bytes in JSON (\uXXXX)
    return [dumps({**wire, field: value[i : i + step]}) for i in range(0, len(value), step)]


def _cut(wire: dict[str, Any], path: tuple[str, ...], limit: int) -> str:
    outer = dict(wire)
    inner = outer
    for key in path[:-1]:
        inner[key] = dict(inner.get(key) or {})
        inner = inner[key]
    value = str(inner.get(path[-1], ""))
    inner[path[-1]] = ""
    room = limit - _size(dumps(outer)) - _size(CUT_MARKER) - 2
    inner[path[-1]] = value[: max(room // 6, 0)] + CUT_MARKER
    return dumps(outer)


_installed = False
dropped_undecodable = 0


def install_guard() -> None:
    """Drop string messages that are not UTF-8 instead of letting aiortc's decoder raise in
    its receive loop (which would end the call); idempotent."""
    global _installed
    if _installed:
        return
    original: Callable[..., Awaitable[None]] = RTCSctpTransport._data_channel_receive

    async def receive(self: RTCSctpTransport, stream_id: int, pp_id: int, data: bytes) -> None:
        global dropped_undecodable
        try:
            await original(self, stream_id, pp_id, data)
        except UnicodeDecodeError:
            dropped_undecodable += 1
            log.warning("dropped a data-channel message that is not UTF-8 (%d bytes)", len(data))

    RTCSctpTransport._data_channel_receive = receive  # type: ignore[method-assign]
    _installed = True
