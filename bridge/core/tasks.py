"""Tasks with one owner: named after their session, cancelled together, and a crash in one
reported to the owner instead of vanishing into the event loop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)


class OwnedTasks:
    """The tasks of one owner (a conversation, a transport)."""

    def __init__(self, owner: str, on_crash: Callable[[], None]) -> None:
        self._owner = owner
        self._on_crash = on_crash
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=f"session-{self._owner}-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "session %s: task %s failed",
                self._owner,
                task.get_name(),
                exc_info=task.exception(),
            )
            self._on_crash()

    async def cancel_all(self) -> None:
        """Cancel every task but the caller's own and wait for them."""
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
