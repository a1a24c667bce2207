"""The live conversations of one bridge process (of any transport), owned by the app."""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import time
from collections.abc import Callable, Iterator

from bridge.core.conversation import Conversation
from bridge.core.errors import BadRequest

log = logging.getLogger(__name__)
GC_DELAY_S = 2.0  # collect this long after a call ended (more ending meanwhile join in)
GC_MIN_INTERVAL_S = 10.0


class SessionRegistry:
    """Sessions by id, with a capacity limit; sessions remove themselves when they close.

    A finished call leaves reference cycles (aiortc's objects point at each other) that only
    CPython's rare full collections free, so memory would climb with every call until one
    happens. The registry runs a full collection shortly after calls end, at most every
    ``GC_MIN_INTERVAL_S``, and gives freed pages back to the OS;
    :func:`freeze_startup_objects` keeps that collection cheap.
    """

    def __init__(self, max_sessions: int, *, gc_delay: float = GC_DELAY_S) -> None:
        self.max_sessions = max_sessions
        self._sessions: dict[str, Conversation] = {}
        self._gc_delay = gc_delay
        self._gc_handle: asyncio.TimerHandle | None = None
        self._last_gc = 0.0
        self.collections = 0
        self.listeners: list[Callable[[str, Conversation], None]] = []
        """Told ("added" | "removed", session) as sessions come and go (metrics, limits)."""

    def check_capacity(self) -> None:
        if len(self._sessions) >= self.max_sessions:
            raise BadRequest(
                f"the bridge is at its limit of {self.max_sessions} calls; try again later",
                code="at_capacity",
                status=503,
            )

    def add(self, session: Conversation) -> None:
        """Count ``session`` from now on; it leaves by itself when it closes."""
        self.check_capacity()
        self._sessions[session.id] = session
        session.on_closed.append(self.remove)
        self._tell("added", session)

    def remove(self, session: Conversation) -> None:
        if self._sessions.get(session.id) is session:
            del self._sessions[session.id]
            self._schedule_collection()
            self._tell("removed", session)

    def _tell(self, change: str, session: Conversation) -> None:
        for listener in self.listeners:
            try:
                listener(change, session)
            except Exception:
                log.exception("a registry listener failed on %s", change)

    def _schedule_collection(self) -> None:
        if self._gc_handle is not None:
            return
        wait = max(self._gc_delay, self._last_gc + GC_MIN_INTERVAL_S - time.monotonic())
        self._gc_handle = asyncio.get_running_loop().call_later(wait, self._collect)

    def _collect(self) -> None:
        self._gc_handle = None
        started = time.monotonic()
        freed = gc.collect()
        _release_free_memory()
        self._last_gc = time.monotonic()
        self.collections += 1
        log.debug("collected %d objects in %.1f ms", freed, (self._last_gc - started) * 1000)

    def get(self, session_id: str) -> Conversation | None:
        return self._sessions.get(session_id)

    def __iter__(self) -> Iterator[Conversation]:
        return iter(list(self._sessions.values()))

    def __len__(self) -> int:
        return len(self._sessions)

    async def close_all(self, reason: str) -> None:
        await asyncio.gather(*(s.close(reason) for s in self), return_exceptions=True)
        if self._gc_handle is not None:
            self._gc_handle.cancel()
            self._gc_handle = None


def _release_free_memory() -> None:
    """Hand freed heap pages back to the OS (glibc keeps them otherwise), where possible."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def freeze_startup_objects() -> None:
    """Move everything alive at startup (modules, classes) out of the collector's sight, so
    the full collections after calls scan only what calls allocated."""
    gc.collect()
    gc.freeze()
