"""Hooks: metadata about every realtime session, for logs, metrics and cost tracking.

``hooks.on(name, callback)`` returns a function that unsubscribes. Callbacks get a frozen
context object and run on the session's event loop; one that raises is logged and skipped,
never breaking the session. No hook ever carries audio, text or credentials: frames are
reported by direction and size only, URLs without their secrets.

============== ============================================ =====================
hook           when                                         context
============== ============================================ =====================
onRealtimeOpen a provider socket is open (or a local one)   :class:`RealtimeOpen`
onRealtimeFrame a frame went to or came from the provider  :class:`RealtimeFrame`
onRealtimeClose a provider socket closed                    :class:`RealtimeClose`
onRealtimeError the provider or its connection reported one :class:`RealtimeError`
onCompletion   a usage report (once per turn), priced       :class:`Completion`
============== ============================================ =====================
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RealtimeOpen:
    session_id: str
    provider: str
    model: str
    url: str  # without credentials


@dataclass(frozen=True, slots=True)
class RealtimeFrame:
    session_id: str
    provider: str
    model: str
    direction: Literal["in", "out"]
    size: int  # bytes; never the payload


@dataclass(frozen=True, slots=True)
class RealtimeClose:
    session_id: str
    provider: str
    model: str
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class RealtimeError:
    session_id: str
    provider: str
    model: str
    code: str
    message: str
    fatal: bool


@dataclass(frozen=True, slots=True)
class Completion:
    session_id: str
    provider: str
    model: str
    usage: dict[str, Any] = field(repr=False)
    cost_usd: float | None


HOOKS = ("onRealtimeOpen", "onRealtimeFrame", "onRealtimeClose", "onRealtimeError", "onCompletion")


class Hooks:
    """Named lists of callbacks; see the module docstring."""

    def __init__(self) -> None:
        self._callbacks: dict[str, list[Callable[[Any], None]]] = {name: [] for name in HOOKS}

    def on(self, name: str, callback: Callable[[Any], None]) -> Callable[[], None]:
        """Call ``callback(context)`` on every ``name`` event; returns the unsubscriber."""
        if name not in self._callbacks:
            raise ValueError(f"unknown hook {name!r} (known: {', '.join(HOOKS)})")
        callbacks = self._callbacks[name]
        callbacks.append(callback)

        def unsubscribe() -> None:
            if callback in callbacks:
                callbacks.remove(callback)

        return unsubscribe

    def wants(self, name: str) -> bool:
        return bool(self._callbacks.get(name))

    def emit(self, name: str, context: Any) -> None:
        for callback in list(self._callbacks[name]):
            try:
                callback(context)
            except Exception:
                log.exception("the %s hook %r raised; skipped", name, callback)
