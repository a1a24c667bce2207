"""The official SDKs as judges of wire messages (test-only dependencies).

Pydantic models accept keys they do not declare (OpenAI's models allow extras; google-genai's
forbid them but only after its converters have run), so :func:`strict_problems` walks the
declared type by hand: every key of every object must be a field (by name or alias) of the
model it lands in, recursively through lists, dicts, unions and discriminated unions. On top,
each check validates the message with the SDK itself (``model_validate_json``), so types,
enums and base64 are judged by the SDK's own code.

* OpenAI Realtime: client events against ``RealtimeClientEvent``, server events against
  ``RealtimeServerEvent`` (picked by ``type``).
* Gemini Live (Developer API): client messages against ``LiveClientMessage``; ``setup`` against
  the fields google-genai's ``_LiveConnectConfig_to_mldev`` writes (``LiveClientSetup`` lacks
  ``realtimeInputConfig`` although the SDK sends it), then through the SDK's own Developer-API
  converters, which refuse Vertex-only fields such as ``sessionResumption.transparent``;
  server messages through ``_LiveServerMessage_from_mldev`` into ``LiveServerMessage``.
"""

from __future__ import annotations

import functools
import inspect
import json
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

import pydantic
from google.genai import _live_converters as live_converters
from google.genai import types as gtypes
from openai.types.realtime import (
    realtime_client_event,
    realtime_server_event,
    realtime_session_create_response,
)


class SchemaError(AssertionError):
    """A message the official SDK would not accept as its type."""


def _union_members(tp: Any) -> tuple[Any, ...]:
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _union_members(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        return typing.get_args(tp)
    return (tp,)


@functools.cache
def _adapter(tp: Any) -> pydantic.TypeAdapter[Any]:
    return pydantic.TypeAdapter(tp)


def _validates(tp: Any, value: Any) -> bool:
    try:
        _adapter(tp).validate_json(json.dumps(value))
    except (pydantic.ValidationError, TypeError):
        return False
    return True


def _fields_by_key(model: type[pydantic.BaseModel]) -> dict[str, Any]:
    generator = model.model_config.get("alias_generator")
    keys: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        keys[name] = info.annotation
        if info.alias:
            keys[info.alias] = info.annotation
        if callable(generator):
            keys[generator(name)] = info.annotation
    return keys


def strict_problems(tp: Any, value: Any, path: str = "$") -> list[str]:
    """Keys in ``value`` that ``tp`` does not declare (empty when it declares them all)."""
    origin = typing.get_origin(tp)
    if tp is Any or tp is object:
        return []
    if origin is typing.Annotated:
        return strict_problems(typing.get_args(tp)[0], value, path)
    if origin in (typing.Union, types.UnionType):
        members = [m for m in typing.get_args(tp) if m is not type(None)]
        if value is None:
            return []
        found: list[str] | None = None
        for member in members:
            if not _validates(member, value):
                continue
            problems = strict_problems(member, value, path)
            if not problems:
                return []
            found = found if found is not None else problems
        return found if found is not None else [f"{path}: matches none of {tp}"]
    if origin is typing.Literal:
        return []
    if origin in (list, Sequence, tuple, set) or tp in (list, tuple):
        args = typing.get_args(tp)
        if not isinstance(value, list) or not args:
            return []
        return [p for i, v in enumerate(value) for p in strict_problems(args[0], v, f"{path}[{i}]")]
    if origin in (dict, Mapping):
        args = typing.get_args(tp)
        if not isinstance(value, dict) or len(args) != 2:
            return []
        return [p for k, v in value.items() for p in strict_problems(args[1], v, f"{path}.{k}")]
    if inspect.isclass(tp) and issubclass(tp, pydantic.BaseModel):
        if not isinstance(value, dict):
            return []
        fields = _fields_by_key(tp)
        problems: list[str] = []
        for key, item in value.items():
            if key not in fields:
                problems.append(f"{path}.{key}: not declared by {tp.__name__}")
            else:
                problems.extend(strict_problems(fields[key], item, f"{path}.{key}"))
        return problems
    if typing.is_typeddict(tp):
        if not isinstance(value, dict):
            return []
        hints = typing.get_type_hints(tp, include_extras=True)
        problems = []
        for key, item in value.items():
            if key not in hints:
                problems.append(f"{path}.{key}: not declared by {tp.__name__}")
            else:
                problems.extend(strict_problems(hints[key], item, f"{path}.{key}"))
        return problems
    return []


def check_model(tp: Any, value: Any, what: str) -> None:
    """``value`` validates as ``tp`` with the SDK and declares nothing ``tp`` lacks."""
    try:
        _adapter(tp).validate_json(json.dumps(value))
    except pydantic.ValidationError as exc:
        raise SchemaError(f"{what} is not a valid {tp}: {exc}\n{_short(value)}") from None
    problems = strict_problems(tp, value)
    if problems:
        raise SchemaError(f"{what}: {'; '.join(problems)}\n{_short(value)}")


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) < 600 else text[:600] + "…"


def _by_type(union: Any) -> dict[str, type[pydantic.BaseModel]]:
    out = {}
    for member in _union_members(union):
        for literal in typing.get_args(member.model_fields["type"].annotation):
            out[literal] = member
    return out


OPENAI_CLIENT_EVENTS = _by_type(realtime_client_event.RealtimeClientEvent)
OPENAI_SERVER_EVENTS = _by_type(realtime_server_event.RealtimeServerEvent)


def check_openai_client_event(message: Any) -> None:
    kind = message.get("type") if isinstance(message, dict) else None
    if kind not in OPENAI_CLIENT_EVENTS:
        raise SchemaError(f"not an OpenAI Realtime client event type: {kind!r}")
    check_model(OPENAI_CLIENT_EVENTS[kind], message, f"client event {kind}")


# The SDK types ``session.created``/``updated``'s session as the request object; captured
# traces carry the session resource (``id``, ``object``, ``expires_at``), which the SDK types
# as ``RealtimeSessionCreateResponse``. Either is accepted.
_SESSION_RESOURCE = realtime_session_create_response.RealtimeSessionCreateResponse


def check_openai_server_event(message: Any) -> None:
    kind = message.get("type") if isinstance(message, dict) else None
    if kind not in OPENAI_SERVER_EVENTS:
        raise SchemaError(f"not an OpenAI Realtime server event type: {kind!r}")
    declared = OPENAI_SERVER_EVENTS[kind]
    if kind in ("session.created", "session.updated") and isinstance(message.get("session"), dict):
        session = message["session"]
        session_type = declared.model_fields["session"].annotation
        check_model(declared, {**message, "session": {"type": "realtime"}}, f"server event {kind}")
        try:
            check_model(session_type, session, f"{kind}.session")
        except SchemaError:
            check_model(_SESSION_RESOURCE, session, f"{kind}.session (as the session resource)")
        return
    check_model(declared, message, f"server event {kind}")


# What ``_LiveConnectConfig_to_mldev`` writes under ``setup`` (Developer API), and the type of
# the LiveConnectConfig field it comes from.
_SETUP_FIELDS: dict[str, Any] = {
    "model": str,
    "generationConfig": gtypes.GenerationConfig,
    "systemInstruction": gtypes.Content,
    "tools": list[gtypes.Tool],
    "sessionResumption": gtypes.SessionResumptionConfig,
    "inputAudioTranscription": gtypes.AudioTranscriptionConfig,
    "outputAudioTranscription": gtypes.AudioTranscriptionConfig,
    "realtimeInputConfig": gtypes.RealtimeInputConfig,
    "contextWindowCompression": gtypes.ContextWindowCompressionConfig,
    "proactivity": gtypes.ProactivityConfig,
    "historyConfig": gtypes.HistoryConfig,
    "avatarConfig": gtypes.AvatarConfig,
    "safetySettings": list[gtypes.SafetySetting],
    "labels": dict[str, str],
}


class _DeveloperApi:
    """Enough of an API client for the SDK's Developer-API converters."""

    vertexai = False


def _check_setup(setup: Any) -> None:
    if not isinstance(setup, dict):
        raise SchemaError("setup must be an object")
    for key, value in setup.items():
        if key not in _SETUP_FIELDS:
            raise SchemaError(f"setup.{key}: google-genai never sends this to the Developer API")
        check_model(_SETUP_FIELDS[key], value, f"setup.{key}")
    model = setup.get("model")
    if not isinstance(model, str) or not model.startswith("models/"):
        raise SchemaError(f"setup.model must be 'models/…', got {model!r}")
    resumption = setup.get("sessionResumption")
    if resumption is not None:
        try:
            live_converters._SessionResumptionConfig_to_mldev(
                gtypes.SessionResumptionConfig.model_validate(resumption).model_dump(
                    exclude_none=True
                )
            )
        except ValueError as exc:
            raise SchemaError(f"setup.sessionResumption: {exc}") from None


def check_gemini_client_message(message: Any) -> None:
    if not isinstance(message, dict) or len(message) != 1:
        raise SchemaError(f"a Gemini client message has exactly one field: {_short(message)}")
    if "setup" in message:
        _check_setup(message["setup"])
        return
    check_model(gtypes.LiveClientMessage, message, "client message")
    parsed = gtypes.LiveClientMessage.model_validate_json(json.dumps(message))
    try:
        live_converters._LiveClientMessage_to_mldev(
            _DeveloperApi(),  # type: ignore[arg-type]
            parsed.model_dump(exclude_none=True),
        )
    except ValueError as exc:
        raise SchemaError(f"google-genai refuses this for the Developer API: {exc}") from None


_SERVER_KEYS = {
    "setupComplete",
    "serverContent",
    "toolCall",
    "toolCallCancellation",
    "usageMetadata",
    "goAway",
    "sessionResumptionUpdate",
    "voiceActivityDetectionSignal",
    "voiceActivity",
}


def check_gemini_server_message(message: Any) -> None:
    if not isinstance(message, dict):
        raise SchemaError("a Gemini server message is an object")
    unknown = set(message) - _SERVER_KEYS
    if unknown:
        raise SchemaError(f"server message fields google-genai does not read: {sorted(unknown)}")
    converted = live_converters._LiveServerMessage_from_mldev(message)
    for key, value in message.items():
        if key != "voiceActivity":
            continue
        extra = set(value) - {"type", "audioOffset"}
        if extra:
            raise SchemaError(f"voiceActivity fields the SDK drops: {sorted(extra)}")
    check_model(gtypes.LiveServerMessage, converted, "server message")


_VARIABLE_KEYS = {"event_id", "item_id", "response_id", "previous_item_id", "id", "newHandle"}


def _shape(value: Any, key: str = "") -> Any:
    """A key for messages the SDK would judge alike (ids and long payloads vary freely)."""
    if isinstance(value, dict):
        return tuple(sorted((k, _shape(v, k)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(_shape(v) for v in value)
    if isinstance(value, str) and (key in _VARIABLE_KEYS or len(value) > 48):
        return "<str>"
    return (type(value).__name__, value)


def check_wire(
    wire: list[tuple[str, Any]],
    server: Any,
    client: Any | None,
) -> int:
    """Judge every recorded message: ``server`` for "out", ``client`` (if given) for "in".
    Returns how many distinct shapes were checked."""
    seen: set[Any] = set()
    for direction, message in wire:
        check = server if direction == "out" else client
        if check is None:
            continue
        if isinstance(message, (str, bytes)):
            raise SchemaError(f"{direction}: not JSON: {message[:80]!r}")
        shape = (direction, _shape(message))
        if shape in seen:
            continue
        seen.add(shape)
        check(message)
    return len(seen)
