"""What a gateway client may ask for, checked before anything reaches a provider (sans I/O).

The server, not the client, owns some of a session: the model (chosen when the socket opens),
the tools and the prompt (a client must not run tools on the operator's account or swap its
stored prompt), and the instructions when ``lock_instructions`` is set. Client event types
outside ``gateway_events`` are refused. A refusal is a :class:`ProtocolError` with its own
code (``event_not_allowed``, ``locked_field``); the session goes on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bridge.protocols.openai_server import ProtocolError, event_id_of

SERVER_OWNED = frozenset({"model", "tools", "tool_choice", "prompt"})
POLICY_CODES = frozenset({"event_not_allowed", "locked_field"})


@dataclass(frozen=True)
class GatewayPolicy:
    allowed: frozenset[str]
    locked: frozenset[str] = SERVER_OWNED  # session (and response) fields clients can't set

    @classmethod
    def of(cls, allowed: tuple[str, ...], lock_instructions: bool) -> GatewayPolicy:
        locked = SERVER_OWNED | ({"instructions"} if lock_instructions else set())
        return cls(frozenset(allowed), frozenset(locked))

    def admit(self, message: dict[str, Any]) -> dict[str, Any]:
        """``message`` (a parsed client event) if the policy allows it, normalised: a
        ``session.update`` without ``session.type`` gets ``"realtime"`` (the GA server
        requires it; clients written for the beta shape leave it out)."""
        kind = message["type"]
        event_id = event_id_of(message)
        if kind not in self.allowed:
            raise ProtocolError(
                "event_not_allowed",
                f"This server does not accept '{kind}' events. Allowed: "
                + ", ".join(sorted(self.allowed))
                + ".",
                "type",
                event_id=event_id,
            )
        if kind == "session.update" and isinstance(message.get("session"), dict):
            self._unlocked(message["session"], "session", event_id)
            if "type" not in message["session"]:
                message = {**message, "session": {"type": "realtime", **message["session"]}}
        elif kind == "response.create" and isinstance(message.get("response"), dict):
            self._unlocked(message["response"], "response", event_id)
        elif kind == "conversation.item.create" and "instructions" in self.locked:
            item = message.get("item")
            if isinstance(item, dict) and item.get("role") == "system":
                raise ProtocolError(
                    "locked_field",
                    "System messages are not accepted: the server sets the instructions.",
                    "item.role",
                    event_id=event_id,
                )
        return message

    def _unlocked(self, fields: dict[str, Any], where: str, event_id: str | None) -> None:
        for key in sorted(set(fields) & self.locked):
            raise ProtocolError(
                "locked_field",
                f"{where}.{key} is set by the server and cannot be changed.",
                f"{where}.{key}",
                event_id=event_id,
            )
