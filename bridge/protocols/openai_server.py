"""The server side of the OpenAI Realtime protocol (GA), sans I/O.

Shared by the OpenAI emulator (``bridge/emulators``) and the bridge's WebSocket gateway
(``bridge/transports/gateway``), so that the rules are written once: which client events
exist and how each is validated (:func:`parse_client_event`, :func:`merged_session`,
:func:`check_message_item`, :func:`decode_append`, :func:`check_truncate`), what a session
object looks like (:func:`default_session`), and the ids and order of the server events
(:class:`ServerEvents`, :class:`ResponseStream`, :func:`committed_events`). Nothing here
awaits or reads a clock. The wording of errors follows ``shared/protocols.md`` §1.11 (marked
unverified there where OpenAI's exact text is not known).
"""

from __future__ import annotations

import base64
import binascii
import copy
import itertools
import json
import secrets
import time
from typing import Any

from bridge.audio.format import AudioFormat

CLIENT_EVENTS = (
    "session.update",
    "input_audio_buffer.append",
    "input_audio_buffer.commit",
    "input_audio_buffer.clear",
    "conversation.item.create",
    "conversation.item.retrieve",
    "conversation.item.truncate",
    "conversation.item.delete",
    "response.create",
    "response.cancel",
    "output_audio_buffer.clear",
)
ROLE_PARTS = {
    "user": {"input_text", "input_audio", "input_image"},
    "assistant": {"output_text", "output_audio"},
    "system": {"input_text"},
}

SESSION_KEYS = {
    "type",
    "model",
    "output_modalities",
    "instructions",
    "tools",
    "tool_choice",
    "max_output_tokens",
    "tracing",
    "truncation",
    "prompt",
    "include",
    "audio",
    "reasoning",
}
AUDIO_INPUT_KEYS = {"format", "transcription", "noise_reduction", "turn_detection"}
AUDIO_OUTPUT_KEYS = {"format", "voice", "speed"}
TURN_DETECTION_KEYS = {
    "server_vad": {
        "type",
        "threshold",
        "prefix_padding_ms",
        "silence_duration_ms",
        "idle_timeout_ms",
        "create_response",
        "interrupt_response",
    },
    "semantic_vad": {"type", "eagerness", "create_response", "interrupt_response"},
}
TRANSCRIPTION_KEYS = {"model", "language", "prompt", "keywords", "languages", "delay"}
TRANSCRIPTION_MODELS = {
    "whisper-1",
    "gpt-transcribe",
    "gpt-live-transcribe",
    "gpt-4o-mini-transcribe",
    "gpt-4o-mini-transcribe-2025-12-15",
    "gpt-4o-transcribe",
    "gpt-4o-transcribe-diarize",
    "gpt-realtime-whisper",
}
VOICE_LOCKED = "Cannot update a conversation's voice if assistant audio is present."
FORMATS = {
    "audio/pcm": AudioFormat("pcm16", 24000),
    "audio/pcmu": AudioFormat("pcmu", 8000),
    "audio/pcma": AudioFormat("pcma", 8000),
}
DEFAULT_INSTRUCTIONS = (
    "Your knowledge cutoff is 2023-10. You are a helpful, witty, and friendly AI."
)


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


def default_session(model: str) -> dict[str, Any]:
    return {
        "type": "realtime",
        "object": "realtime.session",
        "id": new_id("sess"),
        "model": model,
        "output_modalities": ["audio"],
        "instructions": DEFAULT_INSTRUCTIONS,
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
        "tracing": None,
        "truncation": "auto",
        "prompt": None,
        "expires_at": int(time.time()) + 3600,
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "transcription": None,
                "noise_reduction": None,
                "turn_detection": {
                    "type": "server_vad",
                    "threshold": 0.5,
                    "prefix_padding_ms": 300,
                    "silence_duration_ms": 200,
                    "idle_timeout_ms": None,
                    "create_response": True,
                    "interrupt_response": True,
                },
            },
            "output": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "voice": "alloy",
                "speed": 1.0,
            },
        },
        "include": None,
    }


class ProtocolError(Exception):
    """A client mistake, answered with an ``error`` event shaped like OpenAI's; the session
    goes on."""

    def __init__(
        self, code: str, message: str, param: str | None = None, *, event_id: Any = None
    ) -> None:
        super().__init__(message)
        self.code, self.message, self.param = code, message, param
        self.event_id = event_id if isinstance(event_id, str) else None


def _invalid_type(param: str) -> ProtocolError:
    return ProtocolError("invalid_type", f"Invalid type for '{param}'.", param)


def _unknown(param: str) -> ProtocolError:
    return ProtocolError("unknown_parameter", f"Unknown parameter: '{param}'.", param)


def _check_turn_detection(value: object) -> None:
    if value is None:
        return
    param = "session.audio.input.turn_detection"
    kind = value.get("type") if isinstance(value, dict) else None
    if not isinstance(value, dict) or not isinstance(kind, str) or kind not in TURN_DETECTION_KEYS:
        raise ProtocolError(
            "invalid_value",
            f"Invalid value: {kind!r}. Supported values are: 'server_vad' and 'semantic_vad'.",
            f"{param}.type",
        )
    for key in value:
        if key not in TURN_DETECTION_KEYS[kind]:
            raise _unknown(f"{param}.{key}")


def _check_transcription(value: object) -> None:
    if value is None:
        return
    param = "session.audio.input.transcription"
    if not isinstance(value, dict):
        raise ProtocolError("invalid_type", "Invalid type for transcription.", param)
    for key in value:
        if key not in TRANSCRIPTION_KEYS:
            raise _unknown(f"{param}.{key}")
    model = value.get("model")
    if not isinstance(model, str) or model not in TRANSCRIPTION_MODELS:
        raise ProtocolError(
            "invalid_value", f"Invalid value: {str(model)[:64]!r}.", f"{param}.model"
        )


def merged_session(
    current: dict[str, Any], update_obj: object, *, audio_produced: bool = False
) -> dict[str, Any]:
    """Validate a ``session.update`` like the GA server does and merge it into ``current``.

    Like the real API, a voice change once the session has produced audio refuses the whole
    update (``cannot_update_voice``).
    """
    update = update_obj
    if not isinstance(update, dict):
        raise ProtocolError(
            "missing_required_parameter", "Missing required parameter: 'session'.", "session"
        )
    if update.get("type") not in ("realtime",):
        raise ProtocolError(
            "missing_required_parameter",
            "Missing required parameter: 'session.type'.",
            "session.type",
        )
    for key in update:
        if key not in SESSION_KEYS:
            raise _unknown(f"session.{key}")
    for key in ("instructions", "model"):
        if key in update and not isinstance(update[key], str):
            raise _invalid_type(f"session.{key}")
    audio = update.get("audio") or {}
    if not isinstance(audio, dict):
        raise _invalid_type("session.audio")
    for side, allowed in (("input", AUDIO_INPUT_KEYS), ("output", AUDIO_OUTPUT_KEYS)):
        part = audio.get(side) or {}
        if not isinstance(part, dict):
            raise _invalid_type(f"session.audio.{side}")
        for key, value in part.items():
            if key not in allowed:
                raise _unknown(f"session.audio.{side}.{key}")
            if key == "turn_detection":
                _check_turn_detection(value)
            elif key == "transcription":
                _check_transcription(value)
            elif key == "voice" and not isinstance(value, str):
                raise _invalid_type("session.audio.output.voice")
            elif key == "voice" and value != current["audio"]["output"]["voice"]:
                if audio_produced:
                    raise ProtocolError("cannot_update_voice", VOICE_LOCKED, "session.audio.output")
            elif key == "format":
                fmt_type = value.get("type") if isinstance(value, dict) else None
                if (
                    not isinstance(fmt_type, str)
                    or fmt_type not in FORMATS
                    or (fmt_type == "audio/pcm" and value.get("rate", 24000) != 24000)
                ):
                    raise ProtocolError(
                        "invalid_value",
                        f"Invalid audio format: {value!r}.",
                        f"session.audio.{side}.format",
                    )
    modalities = update.get("output_modalities")
    if modalities is not None and modalities not in (["audio"], ["text"]):
        raise ProtocolError(
            "invalid_value",
            "output_modalities must be ['audio'] or ['text'].",
            "session.output_modalities",
        )
    session = copy.deepcopy(current)
    for key, value in update.items():
        if key != "audio":
            session[key] = value
    for side in ("input", "output"):
        session["audio"][side].update(audio.get(side) or {})
    return session


def parse_client_event(raw: str | bytes) -> dict[str, Any]:
    """A client event as a JSON object with a known ``type``; :class:`ProtocolError` (with
    the event's ``event_id`` when it had one) otherwise."""
    try:
        message = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError("invalid_event", f"Invalid JSON in event: {exc}"[:200]) from None
    if not isinstance(message, dict):
        raise ProtocolError("invalid_event", "Events must be JSON objects.")
    event_id = message.get("event_id")
    kind = message.get("type")
    if kind is None:
        raise ProtocolError("invalid_event", "The 'type' field is missing.", event_id=event_id)
    if not isinstance(kind, str) or kind not in CLIENT_EVENTS:
        supported = ", ".join(f"'{k}'" for k in CLIENT_EVENTS)
        raise ProtocolError(
            "invalid_value",
            f"Invalid value: {str(kind)[:64]!r}. Supported values are: {supported}.",
            "type",
            event_id=event_id,
        )
    return message


def event_id_of(message: Any) -> str | None:
    value = message.get("event_id") if isinstance(message, dict) else None
    return value if isinstance(value, str) else None


def decode_append(message: dict[str, Any]) -> bytes:
    """The audio of an ``input_audio_buffer.append``."""
    audio = message.get("audio")
    if not isinstance(audio, str):
        raise ProtocolError(
            "missing_required_parameter", "Missing required parameter: 'audio'.", "audio"
        )
    try:
        return base64.b64decode(audio, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError("invalid_value", "Invalid base64 in 'audio'.", "audio") from None


def check_commit(buffered_ms: float) -> None:
    """A commit needs at least 100 ms of uncommitted audio."""
    if buffered_ms < 100:
        raise ProtocolError(
            "input_audio_buffer_commit_empty",
            "Error committing input audio buffer: buffer too small. Expected at least 100ms "
            f"of audio, but buffer only has {buffered_ms:.2f}ms of audio.",
        )


def check_message_item(item: dict[str, Any]) -> None:
    """A message item as the GA server checks it: a known role with content parts it takes."""
    role = item.get("role")
    if not isinstance(role, str) or role not in ROLE_PARTS:
        raise ProtocolError("invalid_value", f"Invalid value: {role!r}.", "item.role")
    content = item.get("content")
    if not isinstance(content, list):
        raise ProtocolError("invalid_type", "Invalid type for 'item.content'.", "item.content")
    for i, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if not isinstance(kind, str) or kind not in ROLE_PARTS[role]:
            raise ProtocolError(
                "invalid_value",
                f"Invalid value: {kind!r}. Supported values are: "
                + ", ".join(f"'{k}'" for k in sorted(ROLE_PARTS[role]))
                + ".",
                f"item.content[{i}].type",
            )


def check_item(message: dict[str, Any]) -> dict[str, Any]:
    """The item of a ``conversation.item.create``."""
    item = message.get("item")
    if not isinstance(item, dict) or item.get("type") not in (
        "message",
        "function_call",
        "function_call_output",
    ):
        raise ProtocolError("invalid_value", "Invalid 'item'.", "item")
    if item["type"] == "message":
        check_message_item(item)
    return item


def check_truncate(message: dict[str, Any], generated_ms: dict[str, int]) -> tuple[str, int]:
    """(item id, audio_end_ms) of a valid ``conversation.item.truncate``; ``generated_ms``
    says how much audio each assistant item has."""
    item_id = message.get("item_id")
    end_ms = message.get("audio_end_ms")
    if not isinstance(end_ms, int) or isinstance(end_ms, bool) or end_ms < 0:
        raise ProtocolError(
            "invalid_value", "audio_end_ms must be a non-negative integer.", "audio_end_ms"
        )
    duration = generated_ms.get(item_id) if isinstance(item_id, str) else None
    if duration is None:
        raise ProtocolError(
            "item_truncate_invalid_item_id",
            f"Item with item_id '{str(item_id)[:64]}' not found or is not an assistant audio item.",
            "item_id",
        )
    if end_ms > duration:
        raise ProtocolError(
            "invalid_value",
            f"Audio content of {duration}ms is already shorter than {end_ms}ms",
            "audio_end_ms",
        )
    assert isinstance(item_id, str)
    return item_id, end_ms


class ServerEvents:
    """Server events with their ``event_id``s, in one session's sequence."""

    def __init__(self, prefix: str = "event_") -> None:
        self._ids = itertools.count(1)
        self._prefix = prefix

    def event(self, kind: str, **fields: Any) -> dict[str, Any]:
        return {"type": kind, "event_id": f"{self._prefix}{next(self._ids):06d}", **fields}

    def error(
        self,
        code: str,
        message: str,
        param: str | None = None,
        event_id: str | None = None,
        kind: str = "invalid_request_error",
    ) -> dict[str, Any]:
        body = {
            "type": kind,
            "code": code,
            "message": message,
            "param": param,
            "event_id": event_id,
        }
        return self.event("error", error=body)

    def from_error(self, error: ProtocolError) -> dict[str, Any]:
        return self.error(error.code, error.message, error.param, error.event_id)


def committed_events(
    events: ServerEvents, item_id: str, previous: str | None
) -> list[dict[str, Any]]:
    """A user audio turn entering the conversation: committed, then item added and done."""
    item = {
        "id": item_id,
        "type": "message",
        "status": "completed",
        "role": "user",
        "content": [{"type": "input_audio", "transcript": None}],
    }
    return [
        events.event("input_audio_buffer.committed", previous_item_id=previous, item_id=item_id),
        events.event("conversation.item.added", previous_item_id=previous, item=item),
        events.event("conversation.item.done", previous_item_id=previous, item=item),
    ]


class ResponseStream:
    """One response's server events, in the documented GA order (``shared/protocols.md``
    §1.9 B): created, output item and content part added, deltas, then the ``.done`` events
    and ``response.done`` with usage. Cancelled responses end the same way, marked so."""

    def __init__(
        self,
        events: ServerEvents,
        session: dict[str, Any],
        *,
        audio: bool,
        previous_item_id: str | None,
        response_id: str | None = None,
    ) -> None:
        self._events = events
        self.audio = audio
        self.id = response_id or new_id("resp")
        self.item_id = new_id("item")
        self.previous_item_id = previous_item_id
        self.output_bytes = 0  # audio generated for the item, in the output format
        self.text = ""
        self._where = {
            "response_id": self.id,
            "item_id": self.item_id,
            "output_index": 0,
            "content_index": 0,
        }
        output = session["audio"]["output"]
        self._response: dict[str, Any] = {
            "object": "realtime.response",
            "id": self.id,
            "status": "in_progress",
            "status_details": None,
            "output": [],
            "conversation_id": "conv_emulated",
            "output_modalities": session["output_modalities"],
            "max_output_tokens": "inf",
            "audio": {"output": {"format": output["format"], "voice": output["voice"]}},
            "usage": None,
            "metadata": None,
        }
        self._item: dict[str, Any] = {
            "id": self.item_id,
            "type": "message",
            "status": "in_progress",
            "role": "assistant",
            "content": [],
        }

    def start(self) -> list[dict[str, Any]]:
        e = self._events
        part = {"type": "audio", "transcript": ""} if self.audio else {"type": "text", "text": ""}
        return [
            e.event("response.created", response=self._response),
            e.event(
                "response.output_item.added", response_id=self.id, output_index=0, item=self._item
            ),
            e.event(
                "conversation.item.added", previous_item_id=self.previous_item_id, item=self._item
            ),
            e.event("response.content_part.added", **self._where, part=part),
        ]

    def audio_delta(self, data: bytes) -> dict[str, Any]:
        self.output_bytes += len(data)
        return self._events.event(
            "response.output_audio.delta", **self._where, delta=base64.b64encode(data).decode()
        )

    def text_delta(self, delta: str) -> dict[str, Any]:
        """A piece of the transcript (audio responses) or of the text (text responses)."""
        self.text += delta
        kind = (
            "response.output_audio_transcript.delta" if self.audio else "response.output_text.delta"
        )
        return self._events.event(kind, **self._where, delta=delta)

    def finish(
        self,
        status: str = "completed",
        usage: dict[str, Any] | None = None,
        reason: str | None = None,
    ) -> list[dict[str, Any]]:
        """The closing events; ``status`` ``cancelled`` with ``reason`` (``turn_detected``,
        ``client_cancelled``) for a cut response."""
        e, text = self._events, self.text
        out: list[dict[str, Any]] = []
        if self.audio:
            out.append(e.event("response.output_audio.done", **self._where))
            out.append(
                e.event("response.output_audio_transcript.done", **self._where, transcript=text)
            )
            part: dict[str, Any] = {"type": "audio", "transcript": text}
            content = [{"type": "output_audio", "transcript": text}]
        else:
            out.append(e.event("response.output_text.done", **self._where, text=text))
            part = {"type": "text", "text": text}
            content = [{"type": "output_text", "text": text}]
        out.append(e.event("response.content_part.done", **self._where, part=part))
        item = {
            **self._item,
            "status": "completed" if status == "completed" else "incomplete",
            "content": content,
        }
        self._item = item
        out.append(
            e.event("response.output_item.done", response_id=self.id, output_index=0, item=item)
        )
        out.append(e.event("conversation.item.done", previous_item_id=None, item=item))
        details = {"type": "cancelled", "reason": reason} if status == "cancelled" else None
        response = {
            **self._response,
            "status": status,
            "status_details": details,
            "output": [item],
            "usage": usage,
        }
        out.append(e.event("response.done", response=response))
        return out

    @property
    def item(self) -> dict[str, Any]:
        return self._item


def deep_merged(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``update`` merged in, objects key by key (``update`` wins)."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merged(out[key], value)
        else:
            out[key] = value
    return out


def session_format(session: dict[str, Any], side: str) -> AudioFormat:
    """The audio format of a complete (merged, checked) session's ``input`` or ``output``."""
    return FORMATS[session["audio"][side]["format"]["type"]]


def format_of(side: object) -> AudioFormat | None:
    """The audio format named by ``session.audio.input`` or ``.output``, if one is."""
    fmt = side.get("format") if isinstance(side, dict) else None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    return FORMATS.get(str(kind))
