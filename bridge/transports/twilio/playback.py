"""Reply audio to the caller: paced 20 ms mu-law frames, marks, and ``clear`` on barge-in.

:class:`TwilioPlayback` is the conversation's :class:`~bridge.audio.sink.PlaybackSink` for a
Twilio stream. Provider audio is converted to mu-law 8 kHz as it arrives and buffered in a
:class:`~bridge.audio.playout.PlayoutBuffer` (bounded, with the provider's pre-roll policy,
dropping late audio of a cut reply), then sent one 160-byte frame every 20 ms, a little ahead
of Twilio's playback (``SEND_AHEAD_S``) so network jitter never starves it. Nothing is sent
while idle, and a frame is not padded with silence while more of its reply is coming and
Twilio still has something to play. Each frame is followed by a ``mark``; Twilio echoes a mark
once everything before it has played, so the echoes say how much of each reply the caller
really heard (:class:`MarkLedger`).

On barge-in, :meth:`TwilioPlayback.flush` drops what was not sent, has ``clear`` sent (Twilio
then drops what it has queued and echoes the pending marks at once) and returns what the marks
confirmed *before* the clear. Marks echoed because of the clear confirm nothing. A mark
already echoed but still on its way when the clear goes out is not counted either, so the
position errs on the side of less than was heard: by under a frame plus Twilio's one-way
delay.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable

import numpy as np

from bridge.audio import g711
from bridge.audio.format import AudioFormat
from bridge.audio.playout import FRAME_MS, Playback, PlayoutBuffer, PlayoutPolicy
from bridge.core.metrics import Metrics
from bridge.transports.twilio import messages
from bridge.transports.twilio.audio import TWILIO_FORMAT, Downlink

FRAME_BYTES = TWILIO_FORMAT.ms_to_bytes(FRAME_MS)  # 160
FRAME_S = FRAME_MS / 1000
SEND_AHEAD_S = 0.1  # how far ahead of Twilio's playback frames are sent
DRY_MARGIN_S = 0.01  # a partial frame waits for the rest until Twilio is this near to done
MAX_PENDING_MARKS = 1500  # 30 s of frames; a peer that never echoes can't grow memory
MAX_REMEMBERED = 64  # items whose heard position is kept; discarded mark names


class MarkLedger:
    """Marks in flight and what their echoes confirmed; sans I/O."""

    def __init__(self) -> None:
        self._pending: OrderedDict[str, tuple[str, int]] = OrderedDict()  # name -> item, ms
        self._discarded: OrderedDict[str, None] = OrderedDict()  # cleared, echo expected
        self._heard: OrderedDict[str, int] = OrderedDict()  # item -> ms confirmed played
        self._next = 0
        self.sent = 0
        self.confirmed = 0
        self.cleared = 0  # echoed because a clear dropped their audio
        self.unknown = 0  # echoes of names we never sent (or long forgotten)
        self.lost = 0  # forgotten unechoed (MAX_PENDING_MARKS)

    def send(self, item_id: str, item_ms: int) -> str:
        """A name for a mark placed after ``item_ms`` of reply ``item_id``."""
        self._next += 1
        name = str(self._next)
        self._pending[name] = (item_id, item_ms)
        if len(self._pending) > MAX_PENDING_MARKS:
            self._pending.popitem(last=False)
            self.lost += 1
        self.sent += 1
        return name

    def echoed(self, name: str) -> None:
        """Twilio played everything before mark ``name`` (marks play in order)."""
        if name in self._discarded:
            del self._discarded[name]
            self.cleared += 1
            return
        if name not in self._pending:
            self.unknown += 1
            return
        while self._pending:
            done, (item_id, item_ms) = self._pending.popitem(last=False)
            self._remember(item_id, item_ms)
            if done == name:
                break
        self.confirmed += 1

    def cut(self) -> str | None:
        """A clear is going out: the item Twilio is playing (None: nothing is queued there);
        the pending marks will come back without having played."""
        playing = next(iter(self._pending.values()))[0] if self._pending else None
        for name in self._pending:
            self._discarded[name] = None
        self._pending.clear()
        while len(self._discarded) > MAX_PENDING_MARKS:
            self._discarded.popitem(last=False)
        return playing

    def heard_ms(self, item_id: str) -> int:
        return self._heard.get(item_id, 0)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def _remember(self, item_id: str, item_ms: int) -> None:
        self._heard[item_id] = item_ms
        self._heard.move_to_end(item_id)
        while len(self._heard) > MAX_REMEMBERED:
            self._heard.popitem(last=False)


class TwilioPlayback:
    """The playback sink of one stream; see the module docstring. :meth:`run` is its sender
    task: the only writer of ``media``, ``mark`` and ``clear``, so they leave in order."""

    def __init__(
        self,
        source: AudioFormat,
        policy: PlayoutPolicy,
        *,
        max_buffer_ms: int,
        metrics: Metrics | None = None,
    ) -> None:
        self.downlink = Downlink(source)
        self.buffer = PlayoutBuffer(
            TWILIO_FORMAT.rate,
            max_ms=max_buffer_ms,
            dtype=np.uint8,
            silence=g711.ULAW_SILENCE,
            policy=policy,
        )
        self.ledger = MarkLedger()
        self._metrics = metrics
        self._wake = asyncio.Event()
        self._clear_due = False
        self._items: deque[str] = deque(maxlen=MAX_REMEMBERED)  # pushed, oldest still playing
        self._last_item: str | None = None
        self._last_complete = False
        self._cut_item: str | None = None  # late audio of a cut reply is dropped unconverted
        self._arrived_at: float | None = None  # audio reached an idle sink (downlink latency)
        self.frames_sent = 0
        self.clears_sent = 0
        self.runs = 0  # runs of frames: replies, and restarts after Twilio ran dry

    # -- PlaybackSink --------------------------------------------------------------------------

    def push(self, data: bytes, item_id: str) -> None:
        if item_id == self._cut_item or not data:
            return
        ulaw = self.downlink.convert(data)
        if not ulaw:
            return
        if item_id != self._last_item:
            self._last_item, self._last_complete = item_id, False
            self._items.append(item_id)
        now = asyncio.get_running_loop().time()
        if self._arrived_at is None and not self.buffer.buffered_ms:
            self._arrived_at = now
        self.buffer.push(np.frombuffer(ulaw, dtype=np.uint8), item_id, now)
        self._wake.set()

    def end_of_reply(self, item_id: str | None = None) -> None:
        if item_id is None or item_id == self._last_item:
            self._last_complete = True
        self.buffer.end_of_reply(item_id)
        self._wake.set()  # a reply held for pre-roll may play now

    def flush(self) -> Playback | None:
        cut = self.buffer.flush()
        playing = self.ledger.cut()
        if self._last_item is not None and not self._last_complete:
            self._cut_item = self._last_item
        self._last_item, self._last_complete = None, True
        self._items.clear()
        self.downlink.reset()
        self._arrived_at = None
        if cut is None and playing is None:
            return None
        self._clear_due = True
        self._wake.set()
        item_id = playing if playing is not None else cut.item_id if cut is not None else ""
        return Playback(item_id, self.ledger.heard_ms(item_id))

    # -- Twilio's side -------------------------------------------------------------------------

    def mark_echoed(self, name: str) -> None:
        self.ledger.echoed(name)

    async def run(self, stream_sid: str, send: Callable[[str], Awaitable[None]]) -> None:
        """Send frames on schedule (and clears at once) until cancelled.

        A run of frames is paced from its first frame: frame ``k`` leaves ``SEND_AHEAD_S``
        before Twilio is due to play it. A pause in the provider's audio continues the run as
        long as Twilio still has something to play; once it must have played everything, the
        next frame starts a new run (with a new lead).
        """
        loop = asyncio.get_running_loop()
        anchor = 0.0  # when the current run's first frame left
        sent = 0  # frames of the current run
        while True:
            self._wake.clear()
            if self._clear_due:
                self._clear_due = False
                anchor, sent = 0.0, 0
                await send(messages.clear(stream_sid))
                self.clears_sent += 1
            now = loop.time()
            playing_until = anchor + sent * FRAME_S  # Twilio will have played all sent
            if self._short_of_a_frame() and now < playing_until - DRY_MARGIN_S:
                # Part of a frame of an unfinished reply: wait for the rest while Twilio has
                # something left to play, rather than pad the reply with silence.
                await self._pause(playing_until - DRY_MARGIN_S, until_woken=True)
                continue
            frame, had_audio = self.buffer.take(FRAME_BYTES, now)
            due: float | None
            if had_audio:
                if now >= playing_until:  # Twilio has nothing left to play: a new run
                    anchor, sent = now, 0
                    self.runs += 1
                    self._note_downlink(now)
                self._arrived_at = None
                if self._metrics is not None:
                    scheduled = max(anchor + sent * FRAME_S - SEND_AHEAD_S, anchor)
                    self._metrics.frame(max(now - scheduled, 0.0) * 1000)
                item_id = self._current_item()
                # Named before any await: a flush meanwhile must find this mark pending.
                name = self.ledger.send(item_id, self.buffer.played_ms(item_id))
                await send(messages.media(stream_sid, frame.tobytes()))
                await send(messages.mark(stream_sid, name))
                self.frames_sent += 1
                sent += 1
                due = anchor + sent * FRAME_S - SEND_AHEAD_S
            elif self.buffer.holding:
                due = now + FRAME_S  # pre-roll: look again next frame
            else:
                due = None  # idle: sleep until audio (or a clear) arrives
            await self._pause(due)

    async def _pause(self, due: float | None, *, until_woken: bool = False) -> None:
        """Until ``due`` (None: until woken; ``until_woken``: or until audio arrives); a clear
        to send cuts it short."""
        loop = asyncio.get_running_loop()
        while not self._clear_due:
            if due is None:
                await self._wake.wait()
                return
            delay = due - loop.time()
            if delay <= 0:
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            if until_woken:
                return
            self._wake.clear()

    def _short_of_a_frame(self) -> bool:
        """Less than a frame is buffered and more of the reply is coming."""
        buffer = self.buffer
        return buffer.buffered_ms < FRAME_MS and not self._last_complete and not buffer.holding

    def _current_item(self) -> str:
        """The newest reply that has started playing; older ones have been sent in full."""
        current = self._items[0] if self._items else ""
        for item_id in self._items:
            if self.buffer.played_ms(item_id) > 0:
                current = item_id
        while self._items and self._items[0] != current:
            self._items.popleft()
        return current

    def _note_downlink(self, now: float) -> None:
        if self._arrived_at is not None and self._metrics is not None:
            self._metrics.downlink((now - self._arrived_at) * 1000)
        self._arrived_at = None

    # -- reporting -----------------------------------------------------------------------------

    @property
    def buffered_ms(self) -> int:
        return self.buffer.buffered_ms

    @property
    def dropped_ms(self) -> int:
        return self.buffer.dropped_ms
