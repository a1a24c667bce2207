"""A scripted Twilio (the Twilio side of a Media Stream) for end-to-end tests.

It dials the bridge's stream URL as Twilio does, sends ``connected`` and ``start``, then a
``media`` message every 20 ms (paced against the loop clock): the mu-law of whatever tones it
was told to say, digital silence otherwise. It plays what the bridge sends on a simulated
playback clock, 20 ms per 160-byte frame, echoes each ``mark`` once the audio queued before it
has played, and on ``clear`` drops its queue and echoes the pending marks at once, noting how
much it had played at that moment. Every message the bridge sends is checked against the
documented shapes (``violations``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import secrets
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np

from bridge.audio import g711
from tests.peer import tone

RATE = 8000
FRAME_BYTES = 160
FRAME_S = 0.02
SILENCE = bytes([g711.ULAW_SILENCE]) * FRAME_BYTES
OUTBOUND_SHAPES = {  # what the bridge may send: event -> keys (and the inner object's keys)
    "media": ({"event", "streamSid", "media"}, {"payload"}),
    "mark": ({"event", "streamSid", "mark"}, {"name"}),
    "clear": ({"event", "streamSid"}, None),
}


def sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


def ulaw_tone(freq: float, seconds: float, amplitude: float = 0.3) -> bytes:
    return g711.encode(tone(freq, seconds, RATE, amplitude), "pcmu")


@dataclass
class ClearSeen:
    at: float  # loop time the clear arrived
    played_ms: float  # reply audio played by then, the frame under way included
    full_frames_ms: float  # only the frames that had finished playing
    marks_echoed: int  # pending marks echoed because of it


@dataclass
class CallerStats:
    media_sent: int = 0
    media_received: int = 0
    frame_sizes: set[int] = field(default_factory=set)
    marks_received: int = 0
    marks_echoed: int = 0  # because their audio played


class TwilioCaller:
    """See the module docstring."""

    def __init__(
        self,
        url: str,
        *,
        parameters: dict[str, str] | None = None,
        media_format: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.url = url
        self.parameters = parameters or {}
        self.media_format = media_format or {
            "encoding": "audio/x-mulaw",
            "sampleRate": RATE,
            "channels": 1,
        }
        self.headers = headers or {}
        self.stream_sid, self.call_sid, self.account_sid = sid("MZ"), sid("CA"), sid("AC")
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.stats = CallerStats()
        self.violations: list[str] = []
        self.received: list[tuple[float, bytes]] = []  # media from the bridge, on arrival
        self.played: list[tuple[float, bytes]] = []  # frames that finished playing, and when
        self.played_ms = 0.0
        self.clears: list[ClearSeen] = []
        self.sent_audio = bytearray()  # every payload sent, in order
        self.closed = asyncio.Event()
        self.close_code: int | None = None
        self.close_reason = ""
        self._seq = 0
        self._to_say = bytearray()
        self._said = asyncio.Event()
        self._speaking = True
        self._queue: deque[tuple[str, Any]] = deque()  # ("media", bytes) | ("mark", name)
        self._queued = asyncio.Event()
        self._interrupt = asyncio.Event()
        self._frame_started: float | None = None
        self._changed = asyncio.Event()  # anything arrived or played
        self._tasks: list[asyncio.Task[None]] = []

    # -- the call ------------------------------------------------------------------------------

    async def dial(self, http: aiohttp.ClientSession, *, start: bool = True) -> None:
        """Open the socket, send ``connected`` (and ``start``), begin streaming media."""
        self.ws = await http.ws_connect(self.url, headers=self.headers)
        self._tasks.append(asyncio.get_running_loop().create_task(self._read()))
        await self.send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        if start:
            await self.start()

    async def start(self) -> None:
        await self.send(
            {
                "event": "start",
                "sequenceNumber": self._next_seq(),
                "start": {
                    "accountSid": self.account_sid,
                    "streamSid": self.stream_sid,
                    "callSid": self.call_sid,
                    "tracks": ["inbound"],
                    "customParameters": self.parameters,
                    "mediaFormat": self.media_format,
                },
                "streamSid": self.stream_sid,
            }
        )
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._speak()))
        self._tasks.append(loop.create_task(self._play()))

    def say(self, freq: float, seconds: float) -> None:
        self._to_say += ulaw_tone(freq, seconds)
        self._said.clear()

    def pause(self, seconds: float) -> None:
        self._to_say += bytes([g711.ULAW_SILENCE]) * int(seconds * RATE)
        self._said.clear()

    def mute(self) -> None:
        """Stop sending media altogether (a line that went quiet, not silence)."""
        self._speaking = False

    async def wait_said(self, timeout: float = 10) -> None:
        await asyncio.wait_for(self._said.wait(), timeout)

    async def send(self, message: dict[str, Any]) -> None:
        await self.send_raw(json.dumps(message))

    async def send_raw(self, data: str | bytes) -> None:
        assert self.ws is not None
        if isinstance(data, bytes):
            await self.ws.send_bytes(data)
        else:
            await self.ws.send_str(data)

    async def dtmf(self, digit: str) -> None:
        await self.send(self._stamped("dtmf", dtmf={"track": "inbound_track", "digit": digit}))

    async def stop(self) -> None:
        """Hang up as Twilio does: ``stop``, then close with 1000."""
        stop = {"accountSid": self.account_sid, "callSid": self.call_sid}
        await self.send(self._stamped("stop", stop=stop))
        await self.close()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.ws is not None:
            await self.ws.close()

    async def wait_closed(self, timeout: float = 5) -> None:
        await asyncio.wait_for(self.closed.wait(), timeout)

    # -- what was heard ------------------------------------------------------------------------

    async def wait_for(self, predicate: Any, timeout: float = 10) -> None:
        """Until ``predicate()`` holds, re-checked whenever media arrives or plays."""
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    async def wait_played(self, ms: float, timeout: float = 10) -> None:
        await self.wait_for(lambda: self.played_ms >= ms, timeout)

    async def wait_clear(self, timeout: float = 10) -> ClearSeen:
        await self.wait_for(lambda: bool(self.clears), timeout)
        return self.clears[0]

    def heard(self, after: float = 0.0) -> np.ndarray:
        """PCM16 of the frames that played after loop time ``after``."""
        audio = b"".join(frame for at, frame in self.played if at > after)
        return g711.decode(audio, "pcmu")

    # -- tasks ---------------------------------------------------------------------------------

    async def _speak(self) -> None:
        """A media message every 20 ms, on an anchored clock (Twilio does not drift)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        chunk = 0
        while self._speaking:
            payload = bytes(self._to_say[:FRAME_BYTES])
            del self._to_say[:FRAME_BYTES]
            payload += SILENCE[len(payload) :]
            if not self._to_say:
                self._said.set()
            chunk += 1
            media = {
                "track": "inbound",
                "chunk": str(chunk),
                "timestamp": str((chunk - 1) * 20),
                "payload": base64.b64encode(payload).decode(),
            }
            await self.send(self._stamped("media", media=media))
            self.sent_audio += payload
            self.stats.media_sent += 1
            await asyncio.sleep(max(started + chunk * FRAME_S - loop.time(), 0))

    async def _play(self) -> None:
        """Twilio's playback clock: frames play back to back; a mark is echoed when reached."""
        loop = asyncio.get_running_loop()
        clock: float | None = None  # when the frame at the head of the queue starts playing
        while True:
            while self._queue and self._queue[0][0] == "mark":
                await self._echo(self._queue.popleft()[1])
                self.stats.marks_echoed += 1
            if not self._queue:
                clock = self._frame_started = None
                self._queued.clear()
                await self._queued.wait()
                continue
            frame: bytes = self._queue[0][1]
            now = loop.time()
            clock = now if clock is None else clock
            self._frame_started = clock
            ends = clock + len(frame) / RATE
            self._interrupt.clear()
            try:
                async with asyncio.timeout(max(ends - now, 0)):
                    await self._interrupt.wait()
                clock = None  # a clear emptied the queue
            except TimeoutError:
                self._queue.popleft()
                self.played.append((ends, frame))
                self.played_ms += len(frame) * 1000 / RATE
                clock = ends
                self._changed.set()

    async def _read(self) -> None:
        assert self.ws is not None
        try:
            while True:
                message = await self.ws.receive()
                if message.type is aiohttp.WSMsgType.TEXT:
                    await self._on_message(message.data)
                elif message.type is aiohttp.WSMsgType.CLOSE:
                    self.close_code, self.close_reason = message.data, message.extra or ""
                    return
                elif message.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                    self.close_code = self.close_code or self.ws.close_code
                    return
                else:
                    self.violations.append(f"a {message.type.name} message")
        finally:
            self.closed.set()
            self._changed.set()

    async def _on_message(self, text: str) -> None:
        try:
            message = json.loads(text)
            event = message["event"]
            keys, inner = OUTBOUND_SHAPES[event]
        except (ValueError, KeyError, TypeError):
            self.violations.append(f"not a documented message: {text[:80]}")
            return
        if set(message) != keys or message["streamSid"] != self.stream_sid:
            self.violations.append(f"bad {event} message: {text[:80]}")
            return
        if inner is not None and (
            not isinstance(message[event], dict) or set(message[event]) != inner
        ):
            self.violations.append(f"bad {event} object: {text[:80]}")
            return
        if event == "media":
            try:
                frame = base64.b64decode(message["media"]["payload"], validate=True)
            except (binascii.Error, ValueError, TypeError):
                self.violations.append("media payload is not base64")
                return
            self.stats.media_received += 1
            self.stats.frame_sizes.add(len(frame))
            self.received.append((asyncio.get_running_loop().time(), frame))
            self._enqueue(("media", frame))
        elif event == "mark":
            name = message["mark"]["name"]
            if not isinstance(name, str) or not name:
                self.violations.append(f"bad mark name: {name!r}")
                return
            self.stats.marks_received += 1
            self._enqueue(("mark", name))
        else:
            await self._clear()

    def _enqueue(self, entry: tuple[str, Any]) -> None:
        self._queue.append(entry)
        self._queued.set()
        self._changed.set()

    async def _clear(self) -> None:
        now = asyncio.get_running_loop().time()
        playing = bool(self._queue) and self._queue[0][0] == "media"
        started = self._frame_started
        partial = min((now - started) * 1000, 20.0) if playing and started is not None else 0.0
        pending = [value for kind, value in self._queue if kind == "mark"]
        self._queue.clear()
        self._interrupt.set()
        seen = ClearSeen(now, self.played_ms + max(partial, 0.0), self.played_ms, len(pending))
        self.clears.append(seen)
        self._changed.set()
        for name in pending:
            await self._echo(name)

    async def _echo(self, name: str) -> None:
        await self.send(self._stamped("mark", mark={"name": name}))

    def _stamped(self, event: str, **body: Any) -> dict[str, Any]:
        return {
            "event": event,
            "sequenceNumber": self._next_seq(),
            "streamSid": self.stream_sid,
            **body,
        }

    def _next_seq(self) -> str:
        self._seq += 1
        return str(self._seq)
