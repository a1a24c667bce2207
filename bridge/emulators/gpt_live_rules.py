"""The GPT-Live emulator's rules: which client events and ``session.start`` fields exist, and
the strict checks the server runs on them (``shared/protocols-2026.md`` §A.2-A.3, checked
against SDK 3.54.0's ``openai.types.live``). Sans I/O; a :class:`Refusal` names what is wrong.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from bridge.audio.format import PCM16_16K, PCM16_24K, PCMA_8K, PCMU_8K, AudioFormat

MODELS = ("gpt-live-1", "gpt-live-1.1")

# SDK 3.54.0 ``openai.types.live.BuiltInVoice`` (the docs list 8 more; the SDK is the judge).
BUILT_IN_VOICES = frozenset(
    "alloy ash ballad beacon bossa cedar cinder coral delta echo gleam marin meridian quartz "
    "ripple sage shida shimmer stone tempo verse vesper willow".split()
)

FORMATS: dict[tuple[str, int], AudioFormat] = {
    ("audio/pcm", 16000): PCM16_16K,
    ("audio/pcm", 24000): PCM16_24K,
    ("audio/pcmu", 8000): PCMU_8K,
    ("audio/pcma", 8000): PCMA_8K,
}
DEFAULT_FORMAT = {"type": "audio/pcm", "rate": 24000}

FRAME_MS = 10
FRAGMENT_MS = 200  # transcript fragments
MAX_INPUT_ITEMS = 128
MAX_UTTERANCE_MS = 60_000  # what an echo reply keeps of one utterance

# Client events of SDK 3.54.0's ``ClientEvent`` union (plus the sideband's DTMF command), and
# the keys each may carry. The ones the emulator does not implement are answered with an error.
_EVENT_KEYS: dict[str, frozenset[str]] = {
    "session.start": frozenset({"type", "event_id", "session"}),
    "session.update": frozenset({"type", "event_id", "session"}),
    "session.input_audio.append": frozenset({"type", "event_id", "audio"}),
    "session.input_audio.mute": frozenset({"type", "event_id"}),
    "session.input_audio.unmute": frozenset({"type", "event_id"}),
    "session.instructions.append": frozenset({"type", "event_id", "content", "delegation_id"}),
    "session.thinking.append": frozenset({"type", "event_id", "content", "delegation_id"}),
    "session.commentary.append": frozenset({"type", "event_id", "content", "delegation_id"}),
    "session.close": frozenset({"type", "event_id"}),
}
UNSUPPORTED_EVENTS = frozenset(
    {
        "session.output_audio.fixture.play",
        "response.item.create",
        "response.create",
        "decision.create",
        "decision.item.create",
        "decision.item.delete",
        "transport.dtmf.send",
    }
)

_SESSION_KEYS = frozenset(
    {
        "model",
        "instructions",
        "input",
        "audio",
        "delegation",
        "store",
        "safety_identifier",
        "triggers",
        "client",
    }
)
_RESPONSES_KEYS = frozenset(
    {
        "model",
        "instructions",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "max_output_tokens",
        "reasoning",
        "text",
        "service_tier",
    }
)
_ITEM_PART_TYPES = {
    "developer": {None, "input_text"},
    "user": {None, "input_text"},
    "assistant": {None, "text", "output_text"},
}


class Refusal(Exception):
    """A client event the server answers with an ``error``."""

    def __init__(self, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.param = code, message, param


# -- validation ----------------------------------------------------------------------------------


def _keys(obj: dict[str, Any], allowed: Iterable[str], path: str) -> None:
    allowed = frozenset(allowed)
    for key in obj:
        if key not in allowed:
            where = f"{path}.{key}" if path else key
            raise Refusal("unknown_parameter", f"Unknown parameter: '{where}'.", where)


def _object(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Refusal("invalid_type", f"Invalid type for '{path}': expected an object.", path)
    return value


def _list(value: Any, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise Refusal("invalid_type", f"Invalid type for '{path}': expected an array.", path)
    return value


def _required(obj: dict[str, Any], key: str, path: str) -> Any:
    if obj.get(key) is None:
        where = f"{path}.{key}" if path else key
        raise Refusal(
            "missing_required_parameter", f"Missing required parameter: '{where}'.", where
        )
    return obj[key]


def _typed(value: Any, kind: type | tuple[type, ...], path: str, nullable: bool = True) -> Any:
    if value is None and nullable:
        return None
    if not isinstance(value, kind) or (isinstance(value, bool) and kind in (int, float)):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise Refusal("invalid_type", f"Invalid type for '{path}': expected {names}.", path)
    return value


def _one_of(value: Any, allowed: Iterable[Any], path: str) -> Any:
    allowed = list(allowed)
    if value not in allowed:
        shown = ", ".join(repr(a) for a in allowed)
        raise Refusal(
            "invalid_value",
            f"Invalid value for '{path}': {value!r}; expected one of {shown}.",
            path,
        )
    return value


def _check_format(fmt: dict[str, Any], path: str) -> AudioFormat:
    _keys(fmt, ("type", "rate"), path)
    kind = _one_of(
        _required(fmt, "type", path), ("audio/pcm", "audio/pcmu", "audio/pcma"), f"{path}.type"
    )
    rate = _typed(_required(fmt, "rate", path), int, f"{path}.rate")
    rates = (16000, 24000) if kind == "audio/pcm" else (8000,)
    _one_of(rate, rates, f"{path}.rate")
    return FORMATS[(kind, rate)]


def _check_voice(voice: Any, path: str) -> None:
    if voice is None:
        return
    if isinstance(voice, str):
        if voice not in BUILT_IN_VOICES:
            raise Refusal(
                "invalid_value",
                f"Invalid value for '{path}': {voice!r} is not a built-in voice; "
                "use a built-in name or {'id': 'voice_...'} for a custom voice.",
                path,
            )
        return
    voice = _object(voice, path)
    _keys(voice, ("id",), path)
    vid = _typed(_required(voice, "id", path), str, f"{path}.id")
    if not vid.startswith("voice_"):
        raise Refusal("invalid_value", f"Invalid value for '{path}.id': {vid!r}.", f"{path}.id")


def _check_input(items: list[Any], path: str) -> None:
    if len(items) > MAX_INPUT_ITEMS:
        raise Refusal(
            "invalid_value",
            f"Invalid value for '{path}': at most {MAX_INPUT_ITEMS} items, got {len(items)}.",
            path,
        )
    for i, raw in enumerate(items):
        where = f"{path}[{i}]"
        item = _object(raw, where)
        _keys(item, ("type", "role", "content", "id", "status"), where)
        role = _one_of(_required(item, "role", where), _ITEM_PART_TYPES, f"{where}.role")
        if item.get("type") is not None:
            _one_of(item["type"], ("message",), f"{where}.type")
        if item.get("status") is not None:
            _one_of(item["status"], ("completed", "incomplete"), f"{where}.status")
        _typed(item.get("id"), str, f"{where}.id")
        parts = _list(_required(item, "content", where), f"{where}.content")
        if len(parts) != 1:
            raise Refusal(
                "invalid_value",
                f"Invalid value for '{where}.content': each item needs exactly one text part.",
                f"{where}.content",
            )
        part = _object(parts[0], f"{where}.content[0]")
        _keys(part, ("type", "text"), f"{where}.content[0]")
        _one_of(part.get("type"), _ITEM_PART_TYPES[role], f"{where}.content[0].type")
        _typed(_required(part, "text", f"{where}.content[0]"), str, f"{where}.content[0].text")


def _check_ack_delay(obj: dict[str, Any], path: str) -> None:
    delay = _typed(obj.get("acknowledgement_delay_ms"), int, f"{path}.acknowledgement_delay_ms")
    if delay is not None and delay < 0:
        raise Refusal(
            "invalid_value",
            f"Invalid value for '{path}.acknowledgement_delay_ms': must be >= 0.",
            f"{path}.acknowledgement_delay_ms",
        )


def _check_delegation(value: Any, path: str, update: bool) -> dict[str, Any] | None:
    if value is None:
        return None
    deleg = _object(value, path)
    kind = _one_of(
        _required(deleg, "type", path), ("client", "responses", "decisions"), f"{path}.type"
    )
    _check_ack_delay(deleg, path)
    if kind == "client":
        _keys(deleg, ("type", "acknowledgement_delay_ms"), path)
    elif kind == "responses":
        _keys(deleg, ("type", "acknowledgement_delay_ms", "responses"), path)
        raw = deleg.get("responses") if update else _required(deleg, "responses", path)
        if raw is not None:
            responses = _object(raw, f"{path}.responses")
            _keys(responses, _RESPONSES_KEYS, f"{path}.responses")
            model = responses.get("model") if update else _required(responses, "model", path)
            _typed(model, str, f"{path}.responses.model")
            _typed(responses.get("instructions"), str, f"{path}.responses.instructions")
            if responses.get("tools") is not None:
                _list(responses["tools"], f"{path}.responses.tools")
    else:
        _keys(deleg, ("type", "acknowledgement_delay_ms", "decisions"), path)
        raw = deleg.get("decisions") if update else _required(deleg, "decisions", path)
        if raw is not None:
            decisions = _object(raw, f"{path}.decisions")
            where = f"{path}.decisions"
            _keys(decisions, ("model", "questions"), where)
            model = decisions.get("model") if update else _required(decisions, "model", where)
            _typed(model, str, f"{where}.model")
            questions = (
                decisions.get("questions") if update else _required(decisions, "questions", where)
            )
            if questions is not None:
                _list(questions, f"{where}.questions")
    return deleg


def _check_triggers(value: Any, path: str) -> list[Any] | None:
    if value is None:
        return None
    triggers = _list(value, path)
    seen: set[str] = set()
    for i, raw in enumerate(triggers):
        where = f"{path}[{i}]"
        trigger = _object(raw, where)
        _keys(trigger, ("type", "event_type", "decisions"), where)
        _one_of(_required(trigger, "type", where), ("decisions",), f"{where}.type")
        event_type = _one_of(
            _required(trigger, "event_type", where),
            ("session.input_transcript.delta", "session.output_transcript.delta"),
            f"{where}.event_type",
        )
        if event_type in seen:
            raise Refusal(
                "invalid_value",
                f"Invalid value for '{where}.event_type': at most one trigger per event type.",
                f"{where}.event_type",
            )
        seen.add(event_type)
        decisions = _object(_required(trigger, "decisions", where), f"{where}.decisions")
        _keys(decisions, ("questions",), f"{where}.decisions")
        _list(
            _required(decisions, "questions", f"{where}.decisions"), f"{where}.decisions.questions"
        )
    return triggers


def _check_client(value: Any, path: str) -> None:
    if value is None:
        return
    client = _object(value, path)
    _keys(client, ("data_channel",), path)
    channel = _object(_required(client, "data_channel", path), f"{path}.data_channel")
    where = f"{path}.data_channel"
    _keys(channel, ("allowed_client_events", "allowed_server_events"), where)
    for key in ("allowed_client_events", "allowed_server_events"):
        allowed = channel.get(key)
        if allowed is not None and allowed != "all":
            _list(allowed, f"{where}.{key}")


def check_session_start(
    session: dict[str, Any], models: tuple[str, ...]
) -> tuple[dict[str, Any], AudioFormat]:
    """The resolved session (without ``id``/``expires_at``/``status``) and its audio format,
    or a :class:`Refusal` for the first thing wrong (unknown keys first, at each level)."""
    path = "session"
    _keys(session, _SESSION_KEYS, path)
    model = _typed(_required(session, "model", path), str, f"{path}.model")
    if models and model not in models:
        raise Refusal(
            "invalid_model",
            f"The model '{model}' is not a GPT-Live model; use one of {', '.join(models)}.",
            f"{path}.model",
        )
    instructions = _typed(session.get("instructions"), str, f"{path}.instructions")
    items = session.get("input")
    if items is not None:
        _check_input(_list(items, f"{path}.input"), f"{path}.input")
    fmt_obj: dict[str, Any] = dict(DEFAULT_FORMAT)
    voice: Any = "marin"
    audio = session.get("audio")
    if audio is not None:
        audio = _object(audio, f"{path}.audio")
        _keys(audio, ("format", "output"), f"{path}.audio")
        if audio.get("format") is not None:
            fmt_obj = _object(audio["format"], f"{path}.audio.format")
            _check_format(fmt_obj, f"{path}.audio.format")
        if audio.get("output") is not None:
            output = _object(audio["output"], f"{path}.audio.output")
            _keys(output, ("voice",), f"{path}.audio.output")
            _check_voice(output.get("voice"), f"{path}.audio.output.voice")
            if output.get("voice") is not None:
                voice = output["voice"]
    delegation = _check_delegation(session.get("delegation"), f"{path}.delegation", update=False)
    store = _typed(session.get("store"), bool, f"{path}.store")
    safety = _typed(session.get("safety_identifier"), str, f"{path}.safety_identifier")
    triggers = _check_triggers(session.get("triggers"), f"{path}.triggers")
    _check_client(session.get("client"), f"{path}.client")
    resolved: dict[str, Any] = {"model": model}
    if instructions is not None:
        resolved["instructions"] = instructions
    resolved["input"] = list(items or [])
    resolved["audio"] = {
        "format": {"type": fmt_obj["type"], "rate": fmt_obj["rate"]},
        "output": {"voice": voice},
    }
    resolved["delegation"] = delegation or {"type": "client"}
    resolved["store"] = bool(store)
    if safety is not None:
        resolved["safety_identifier"] = safety
    resolved["triggers"] = triggers or []
    if session.get("client") is not None:
        resolved["client"] = session["client"]
    return resolved, FORMATS[(fmt_obj["type"], fmt_obj["rate"])]
