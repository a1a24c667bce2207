"""The reply playout buffer: what to play in the next 20 ms, and how much of each reply played.

Sans I/O: the outbound track calls it with the time (``now``) and never the other way round,
so its decisions are tested without a clock.

Providers deliver a reply in bursts. OpenAI sends faster than real time; Gemini often slower.
Played as it arrives, a slow reply is choppy: every late chunk is a gap inside a word. So a
new reply is held back (pre-roll) until enough is buffered to play through to the end without
running dry. "Enough" adapts to the provider: ``base_preroll_ms``, plus, when the reply is
arriving slower than real time (rate ``r`` < 1), ``(1 - r) * horizon_ms``, which covers a reply
of about ``horizon_ms / (1 - r)`` at that rate. A reply that is complete plays at once. If a
reply still runs dry, playback pauses and re-buffers to the same target rather than
stuttering frame by frame; ``rebuffers`` and ``gap_ms`` count it.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any

import numpy as np

FRAME_MS = 20
_REMEMBERED_ITEMS = 32
_MIN_RATE_WINDOW_S = 0.1  # don't trust an arrival rate measured over less than this


@dataclass(frozen=True, slots=True)
class Playback:
    """How much of reply ``item_id`` was actually sent to the peer when it was cut."""

    item_id: str
    played_ms: int


@dataclass
class _Segment:
    item_id: str
    samples: np.ndarray[Any, Any]
    pos: int = 0


@dataclass
class PlayoutPolicy:
    """How long a new reply is held back; all zero means "play at once" (the default)."""

    base_preroll_ms: int = 0
    horizon_ms: int = 0
    max_preroll_ms: int = 0
    max_wait_ms: int = 2000  # never hold a reply back longer than this (wall clock)


class PlayoutBuffer:
    """Buffered reply audio in units of ``rate`` samples; see the module docstring."""

    def __init__(
        self,
        rate: int,
        *,
        max_ms: int,
        dtype: type[np.generic] = np.int16,
        silence: int = 0,
        policy: PlayoutPolicy | None = None,
    ) -> None:
        self.rate = rate
        self.policy = policy or PlayoutPolicy()
        self._max = rate * max_ms // 1000
        self._dtype = dtype
        self._silence = silence
        self._segments: deque[_Segment] = deque()
        self._buffered = 0
        self._played: OrderedDict[str, int] = OrderedDict()
        self._current_item: str | None = None  # the item whose audio was played last
        # The reply being received: for pre-roll and the arrival rate.
        self._reply: str | None = None
        self._reply_first_at = 0.0
        self._reply_received = 0
        self._reply_first_chunk = 0
        self._reply_complete = False
        self._holding = False
        self._holding_since = 0.0
        self._underrun = False
        self._playing_reply = False  # a reply has started playing and has not ended
        self._cut_item: str | None = None  # audio still arriving for a flushed reply is dropped
        # Statistics.
        self.dropped_ms = 0
        self.rebuffers = 0
        self.gap_ms = 0
        self.preroll_waits = 0

    # -- input ---------------------------------------------------------------------------------

    def push(self, samples: np.ndarray[Any, Any], item_id: str, now: float) -> None:
        """Queue reply audio; beyond the cap it is dropped (and counted), never blocking."""
        if item_id == self._cut_item:
            return
        if item_id != self._reply:
            self._reply = item_id
            self._reply_first_at = now
            self._reply_received = 0
            self._reply_first_chunk = samples.size
            self._reply_complete = False
            if not self._buffered and self._preroll_enabled:
                self._hold(now)
        self._reply_received += samples.size
        room = self._max - self._buffered
        if samples.size > room:
            self.dropped_ms += (samples.size - max(room, 0)) * 1000 // self.rate
            samples = samples[: max(room, 0)]
        if samples.size:
            self._segments.append(_Segment(item_id, samples))
            self._buffered += samples.size

    def end_of_reply(self, item_id: str | None = None) -> None:
        """No more audio is coming for the current reply: play what is left without waiting."""
        if item_id is None or item_id == self._reply:
            self._reply_complete = True

    # -- output --------------------------------------------------------------------------------

    def take(self, n: int, now: float) -> tuple[np.ndarray[Any, Any], bool]:
        """The next ``n`` samples (silence-padded) and whether any reply audio is in them."""
        if self._holding:
            if not self._ready(now):
                return self._silent(n), False
            self._holding = False
        if not self._buffered:
            if self._playing_reply and not self._reply_complete:
                self._note_underrun(n, now)
            else:
                self._playing_reply = False
            self._current_item = None
            return self._silent(n), False
        self._underrun = False
        self._playing_reply = True
        out = self._silent(n)
        filled = 0
        while filled < n and self._segments:
            seg = self._segments[0]
            count = min(n - filled, seg.samples.size - seg.pos)
            out[filled : filled + count] = seg.samples[seg.pos : seg.pos + count]
            seg.pos += count
            filled += count
            self._count_played(seg.item_id, count)
            if seg.pos >= seg.samples.size:
                self._segments.popleft()
        self._buffered -= filled
        return out, True

    def flush(self) -> Playback | None:
        """Drop everything queued (barge-in); what was cut, or None when nothing was."""
        cut = self._buffered > 0 or self._holding
        item = self._current_item or (self._segments[0].item_id if self._segments else None)
        self._segments.clear()
        self._buffered = 0
        self._holding = False
        self._playing_reply = False
        if self._reply is not None and not self._reply_complete:
            self._cut_item = self._reply  # late audio of the cut reply must not play
        self._reply_complete = True
        if not cut or item is None:
            return None
        return Playback(item, self.played_ms(item))

    # -- state ---------------------------------------------------------------------------------

    def played_ms(self, item_id: str) -> int:
        return self._played.get(item_id, 0) * 1000 // self.rate

    @property
    def buffered_ms(self) -> int:
        return self._buffered * 1000 // self.rate

    @property
    def holding(self) -> bool:
        return self._holding

    def target_ms(self, now: float) -> int:
        """How much to buffer before a reply plays, given how fast it is arriving."""
        p = self.policy
        target = p.base_preroll_ms
        elapsed = now - self._reply_first_at
        if p.horizon_ms and elapsed >= _MIN_RATE_WINDOW_S:
            # Audio seconds per second since the first chunk (which arrived at no cost).
            rate = (self._reply_received - self._reply_first_chunk) / self.rate / elapsed
            if rate < 1.0:
                target += int((1.0 - rate) * p.horizon_ms)
        return min(target, p.max_preroll_ms) if p.max_preroll_ms else target

    # -- internals -----------------------------------------------------------------------------

    @property
    def _preroll_enabled(self) -> bool:
        return self.policy.base_preroll_ms > 0 or self.policy.horizon_ms > 0

    def _hold(self, now: float) -> None:
        self._holding = True
        self._holding_since = now
        self.preroll_waits += 1

    def _ready(self, now: float) -> bool:
        return (
            self._reply_complete
            or self.buffered_ms >= self.target_ms(now)
            or (now - self._holding_since) * 1000 >= self.policy.max_wait_ms
        )

    def _note_underrun(self, n: int, now: float) -> None:
        """The reply ran dry before its end: count the gap, and re-buffer if we may."""
        self.gap_ms += n * 1000 // self.rate
        if not self._underrun:
            self._underrun = True
            self.rebuffers += 1
            if self._preroll_enabled:
                self._hold(now)

    def _silent(self, n: int) -> np.ndarray[Any, Any]:
        return np.full(n, self._silence, dtype=self._dtype)

    def _count_played(self, item_id: str, samples: int) -> None:
        self._current_item = item_id
        if item_id in self._played:
            self._played[item_id] += samples
        else:
            self._played[item_id] = samples
            while len(self._played) > _REMEMBERED_ITEMS:
                self._played.popitem(last=False)
