"""The official ``openai`` SDK as the judge of GPT-Live wire messages (test-only).

Like :mod:`tests.sdk_types` does for the Realtime API: a message must validate as the SDK
model its ``type`` picks from ``openai.types.live``'s ``ClientEvent`` / ``ServerEvent`` unions,
and may not carry a key that model (recursively) does not declare. On top of the models:

* ``session.{instructions,thinking,commentary}.append`` must carry ``delegation_id`` (the SDK
  model defaults it to None, but its ``*Param`` TypedDict marks it ``Required``);
* ``session.output_audio.delta`` on the primary socket has no ``start_ms``/``end_ms`` (the
  SDK declares them for sideband reflections only).
"""

from __future__ import annotations

import typing
from typing import Any

import pydantic
from openai.types.live import client_event, server_event

from tests.sdk_types import SchemaError, check_model, check_wire


def _by_type(union: Any) -> dict[str, type[pydantic.BaseModel]]:
    members = typing.get_args(union)
    if typing.get_origin(union) is typing.Annotated:
        members = typing.get_args(members[0])
    out: dict[str, type[pydantic.BaseModel]] = {}
    for member in members:
        for literal in typing.get_args(member.model_fields["type"].annotation):
            out[literal] = member
    return out


GPT_LIVE_CLIENT_EVENTS = _by_type(client_event.ClientEvent)
GPT_LIVE_SERVER_EVENTS = _by_type(server_event.ServerEvent)

_NULLABLE_REQUIRED = {
    "session.instructions.append": "delegation_id",
    "session.thinking.append": "delegation_id",
    "session.commentary.append": "delegation_id",
}


def check_gpt_live_client_event(message: Any) -> None:
    kind = message.get("type") if isinstance(message, dict) else None
    if kind not in GPT_LIVE_CLIENT_EVENTS:
        raise SchemaError(f"not a GPT-Live client event type: {kind!r}")
    check_model(GPT_LIVE_CLIENT_EVENTS[kind], message, f"client event {kind}")
    required = _NULLABLE_REQUIRED.get(kind)
    if required is not None and required not in message:
        raise SchemaError(f"client event {kind}: '{required}' is required (null allowed)")


def check_gpt_live_server_event(message: Any, primary: bool = True) -> None:
    kind = message.get("type") if isinstance(message, dict) else None
    if kind not in GPT_LIVE_SERVER_EVENTS:
        raise SchemaError(f"not a GPT-Live server event type: {kind!r}")
    check_model(GPT_LIVE_SERVER_EVENTS[kind], message, f"server event {kind}")
    if primary and kind == "session.output_audio.delta" and {"start_ms", "end_ms"} & set(message):
        raise SchemaError("session.output_audio.delta: no start_ms/end_ms on the primary socket")


def judge_gpt_live(emulator: Any, clients: bool = False) -> int:
    """Judge every message every session of ``emulator`` sent (and received, if ``clients``);
    returns how many distinct shapes were checked."""
    return sum(
        check_wire(
            session.wire,
            check_gpt_live_server_event,
            check_gpt_live_client_event if clients else None,
        )
        for session in emulator.sessions
    )
