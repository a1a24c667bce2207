"""One frame clock for every outbound track of an event loop.

A track that paces itself with ``asyncio.sleep`` costs the loop a timer, a future and a wake-up
per call every 20 ms; with many calls the loop spends more time waking than working, and the
wake-ups land at random phases so nothing batches. :class:`FrameClock` keeps one timer for all
tracks: time is cut into *sub-ticks* of ``FRAME_MS / slots``; each track is given one slot
(round robin) and its frames fall on every ``slots``-th sub-tick of it. All tracks of a slot
are woken by one timer and run back to back in one loop iteration, while the ``slots`` phases
keep those batches small enough not to hold up inbound packets for long.

Measured (40 silent tracks, random start phases, one core): a timer per track 9.4-10.8 % of a
core; one clock with 1 slot 3.5-4.0 %, 2 slots 5.0-5.2 %, 4 slots 7.2 % (each wake-up of the
loop costs about 35 µs). More slots buy smaller bursts (a slot's calls are encoded back to back
while inbound packets wait) for that CPU; the service's default is 2.

Tracks on the media fast path (:mod:`.fastpath`) don't wait at all: they register a *ticker*,
a plain function the clock calls at every sub-tick while it is registered (each decides from
its own schedule whether a frame is due), so a frame costs a function call instead of a future,
a task wake-up and aiortc's sender coroutine.

The clock has no thread, no task and no timer while nobody waits or ticks: it is safe to create
per app and to drop without closing.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
from collections.abc import Callable

log = logging.getLogger(__name__)

FRAME_MS = 20


class FrameClock:
    """Shared 20 ms pacing; see the module docstring."""

    def __init__(self, slots: int = 2) -> None:
        if not 1 <= slots <= FRAME_MS:
            raise ValueError(f"slots must be 1..{FRAME_MS} (got {slots})")
        self.slots = slots
        self.sub_tick_s = FRAME_MS / 1000 / slots
        self._next_slot = itertools.count()
        self._origin: float | None = None
        self._waiters: dict[int, list[asyncio.Future[None]]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: int | None = None
        self._tickers: dict[int, Callable[[float], None]] = {}
        self._ticker_ids = itertools.count()
        self.wakeups = 0  # timer firings, for tests and benchmarks

    def slot(self) -> int:
        """The phase for a new track (round robin over the slots)."""
        return next(self._next_slot) % self.slots

    def sub_tick(self, now: float) -> float:
        """``now`` in sub-ticks since the clock's origin (fixed at its first use)."""
        if self._origin is None:
            self._origin = now
        return (now - self._origin) / self.sub_tick_s

    def time_of(self, sub_tick: int) -> float:
        assert self._origin is not None
        return self._origin + sub_tick * self.sub_tick_s

    def first_sub_tick(self, now: float, slot: int) -> int:
        """The first sub-tick of ``slot`` at or after ``now``."""
        at = math.ceil(self.sub_tick(now) - 1e-9)
        return at + (slot - at) % self.slots

    async def wait(self, sub_tick: int) -> None:
        """Until ``sub_tick`` has come; returns at once when it already has."""
        loop = asyncio.get_running_loop()
        if self.time_of(sub_tick) <= loop.time():
            return
        # A future per waiter (cheap, in C), so that a cancelled track cancels only its own.
        future: asyncio.Future[None] = loop.create_future()
        waiting = self._waiters.get(sub_tick)
        if waiting is None:
            self._waiters[sub_tick] = [future]
            if self._timer_at is None or sub_tick < self._timer_at:
                self._arm(loop, sub_tick)
        else:
            waiting.append(future)
        await future

    def add_ticker(self, tick: Callable[[float], None]) -> Callable[[], None]:
        """Call ``tick(now)`` at every sub-tick from the next one on; returns the function
        that removes it (idempotent). A ticker that raises is removed and logged."""
        loop = asyncio.get_running_loop()
        key = next(self._ticker_ids)
        self._tickers[key] = tick
        following = math.floor(self.sub_tick(loop.time()) + 1e-9) + 1
        if self._timer_at is None or following < self._timer_at:
            self._arm(loop, following)

        def remove() -> None:
            self._tickers.pop(key, None)

        return remove

    def _arm(self, loop: asyncio.AbstractEventLoop, sub_tick: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = sub_tick
        self._timer = loop.call_at(self.time_of(sub_tick), self._fire, loop)

    def _fire(self, loop: asyncio.AbstractEventLoop) -> None:
        self.wakeups += 1
        self._timer = self._timer_at = None
        now = loop.time()
        for key, tick in list(self._tickers.items()):
            try:
                tick(now)
            except Exception:  # one broken call must not stop the others' audio
                log.exception("a paced track failed; it is stopped")
                self._tickers.pop(key, None)
        due = [k for k in self._waiters if self.time_of(k) <= now + 1e-6]
        for k in due:
            for future in self._waiters.pop(k):
                if not future.done():
                    future.set_result(None)
        following = [min(self._waiters)] if self._waiters else []
        if self._tickers:
            following.append(math.floor(self.sub_tick(loop.time()) + 1e-9) + 1)
        if following:
            self._arm(loop, min(following))
