"""The one I/O loop that owns a provider's WebSocket, shared by the OpenAI and Gemini providers.

A :class:`SocketProvider` serves one socket at a time (:meth:`SocketProvider._serve`: a reader
that turns messages into neutral events through the provider's sans-I/O translator, and a
writer that sends control messages first, then queued user audio). When the socket has to go,
:meth:`SocketProvider._run` replaces it:

* a **renewal** (a session cap, an expiry, a ``goAway``) opens the successor right away;
* a **transient** drop (close 1006/1011, a network error, a socket that stops answering pings)
  reconnects with jittered exponential backoff, at most ``provider_reconnects`` times;
* a **fatal** error (bad key, no quota, unknown model) ends the session with an ``error`` event.

User audio waits in a bounded queue meanwhile (oldest dropped first, counted), so a slow or
absent provider never blocks the peer. Subclasses say how to open a configured session, what a
message means, and when the socket should be renewed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import AsyncIterator
from enum import Enum
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.protocol import State

from bridge.audio.playout import PlayoutPolicy
from bridge.core import events as ev
from bridge.core.errors import ProviderError
from bridge.core.redact import redact
from bridge.providers.base import UNOBSERVED, ConnectionObserver, SocketOptions

log = logging.getLogger(__name__)
# websockets logs handshake headers (API keys) at DEBUG: give it a logger that never does.
ws_log = logging.getLogger("bridge.providers.websocket")
ws_log.setLevel(logging.INFO)

MAX_BURST_MS = 120_000  # user audio a working socket may have queued (a file sent at once)
MAX_MERGED_CHUNKS = 5  # merge up to 100 ms per message when audio has queued up
OPEN_TIMEOUT_S = 10.0
CLOSE_TIMEOUT_S = 1.0  # a dead provider won't answer our close frame: don't wait long for it
TRANSIENT_CLOSE_CODES = {1000, 1001, 1006, 1011, 1012, 1013, 1014}


class Outcome(Enum):
    CLOSED = "closed"  # we closed it
    FATAL = "fatal"
    TRANSIENT = "transient"
    RENEW = "renew"


class SocketProvider(ABC):
    """Shared Provider plumbing around one replaceable WebSocket; see the module docstring."""

    name = "socket"
    playout = PlayoutPolicy()

    def __init__(self, model: str, options: SocketOptions) -> None:
        self.model = model
        self._options = options
        self.observer: ConnectionObserver = UNOBSERVED
        self._events: asyncio.Queue[ev.Event | None] = asyncio.Queue()
        self._control: deque[dict[str, Any]] = deque()
        # User audio held while a socket is replaced, bounded by duration (chunks may be of
        # any size: 20 ms from a peer, seconds from the SDK); oldest dropped first.
        self._audio: deque[bytes] = deque()
        self._audio_bytes = 0
        self._writing = False  # a socket's writer is draining the queue
        self._wake = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._ws: ClientConnection | None = None
        self._recv_timeout: asyncio.Timeout | None = None
        self._opening: ClientConnection | None = None  # the socket :meth:`_open` is setting up
        self._closed = False
        self.connections = 0
        self.reconnects = 0
        self.renewals = 0
        self.dropped_audio_chunks = 0
        self.malformed_messages = 0

    # -- what a provider must say --------------------------------------------------------------

    @abstractmethod
    async def _open(self) -> ClientConnection:
        """Connect and configure a session (resuming or re-seeding it as the provider can)."""

    @abstractmethod
    def _receive(self, raw: str | bytes) -> list[ev.Event]:
        """Translate one message (the sans-I/O translator's job)."""

    @abstractmethod
    def _verdict(self, cap_reached: bool) -> Outcome | None:
        """After each message: should this socket end (fatal) or be renewed now?"""

    @abstractmethod
    def _audio_message(self, pcm: bytes) -> dict[str, Any]:
        """The message that carries a chunk of user audio."""

    def _session_cap(self) -> float | None:
        """Seconds after which the socket should be renewed at a turn boundary (None: never)."""
        return None

    def _wake_at(self) -> float | None:
        """A loop time at which :meth:`_verdict` must be asked again even if nothing arrives."""
        return None

    def _fatal_close(self, code: int, reason: str) -> ev.Error | None:
        """An error event if this close code/reason means the session cannot go on."""
        if code in TRANSIENT_CLOSE_CODES:
            return None
        detail = f"{code}{': ' + reason if reason else ''}"
        return ev.Error("provider_closed", f"{self.name} closed the session ({detail})", fatal=True)

    def _sent(self, message: dict[str, Any]) -> None:  # noqa: B027 - an optional hook
        """Called after each message went out on the socket (for replay bookkeeping)."""

    # -- Provider interface --------------------------------------------------------------------

    async def connect(self) -> None:
        ws = await self._open_safely()
        if self._closed:  # closed while it opened: the socket is ours to close
            await self._close_socket(ws, "closed by the bridge")
            return
        loop = asyncio.get_running_loop()
        self._runner = loop.create_task(self._run(ws), name=f"{self.name}-provider")

    def send_audio(self, pcm: bytes) -> None:
        if self._closed:
            return
        self._audio.append(pcm)
        self._audio_bytes += len(pcm)
        # While a socket is replaced: audio_queue_ms. While one is up, only a burst faster
        # than the socket (the SDK sending a file at once) queues: up to MAX_BURST_MS.
        held_ms = max(self._options.audio_queue_ms, MAX_BURST_MS if self._writing else 0)
        limit = held_ms * self._input_bytes_per_ms()
        while self._audio_bytes > limit and len(self._audio) > 1:
            self._audio_bytes -= len(self._audio.popleft())
            self.dropped_audio_chunks += 1
        self._wake.set()

    def _input_bytes_per_ms(self) -> int:
        """Bytes of one millisecond of user audio as this provider takes it."""
        return 48  # PCM16 at 24 kHz; providers with another input format say so

    def _take_audio(self) -> bytes:
        """Queued audio for one message: up to MAX_MERGED_CHUNKS chunks, merged."""
        chunks = [self._audio.popleft()]
        while self._audio and len(chunks) < MAX_MERGED_CHUNKS:
            chunks.append(self._audio.popleft())
        data = b"".join(chunks)
        self._audio_bytes -= len(data)
        return data

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        runner, self._runner = self._runner, None
        if runner is not None and runner is not asyncio.current_task():
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await runner
        if self._ws is not None:
            await self._close_socket(self._ws, "closed by the bridge")
        await self._abandon_opening()
        self._events.put_nowait(None)

    async def _abandon_opening(self) -> None:
        """Close the socket :meth:`_open` was setting up, if it never went into service."""
        ws, self._opening = self._opening, None
        if ws is not None and ws is not self._ws:
            with contextlib.suppress(Exception):
                await self._close_socket(ws, "closed by the bridge")

    async def _close_socket(self, ws: ClientConnection, why: str) -> None:
        """Close a socket of ours, reporting it if it was still open."""
        was_open = ws.state is State.OPEN
        await ws.close()
        if was_open:
            self.observer.closed(1000, why)

    async def events(self) -> AsyncIterator[ev.Event]:
        while (event := await self._events.get()) is not None:
            yield event

    def stats(self) -> dict[str, Any]:
        return {
            "connections": self.connections,
            "reconnects": self.reconnects,
            "renewals": self.renewals,
            "dropped_audio_chunks": self.dropped_audio_chunks,
            "malformed_messages": self.malformed_messages,
        }

    def _send(self, *messages: dict[str, Any]) -> None:
        if messages:
            self._control.extend(messages)
            self._wake.set()

    def _send_after_audio(self, *messages: dict[str, Any]) -> None:
        """Like :meth:`_send`, but after the user audio queued so far (a commit must follow
        the audio it commits; control messages otherwise overtake queued audio)."""
        while self._audio:
            self._control.append(self._audio_message(self._take_audio()))
        self._send(*messages)

    def _poke(self) -> None:
        """Ask :meth:`_verdict` again now (the reader would otherwise wait for a message)."""
        if self._recv_timeout is not None:
            self._recv_timeout.reschedule(asyncio.get_running_loop().time())

    # -- socket side ---------------------------------------------------------------------------

    async def _connect(self, url: str, headers: dict[str, str]) -> ClientConnection:
        """Open the WebSocket; HTTP refusals become :class:`ProviderError` via ``_refused``."""
        interval = self._options.ping_interval
        try:
            ws = await websockets.connect(
                url,
                additional_headers=headers,
                open_timeout=OPEN_TIMEOUT_S,
                ping_interval=interval,
                ping_timeout=interval,
                close_timeout=CLOSE_TIMEOUT_S,
                max_size=None,
                # Base64 audio barely compresses: permessage-deflate cost ~7 % of the bridge's
                # busy CPU on the provider path (py-spy) for nothing. The SDKs do the same.
                compression=None,
                logger=ws_log,
            )
        except InvalidStatus as exc:
            raise self._refused(exc.response.status_code) from None
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            raise ProviderError(f"could not reach {self.name}: {type(exc).__name__}") from None
        self.connections += 1
        self._opening = ws
        self.observer.opened(redact(url))
        return ws

    async def _open_safely(self) -> ClientConnection:
        """:meth:`_open`, with a socket that closes while it is being configured turned into a
        :class:`ProviderError` that says why (what the provider sent before closing first)."""
        try:
            ws = await self._open()
        except ConnectionClosed as exc:
            error = await self._closed_while_opening(exc)
            await self._abandon_opening()
            raise error from None
        except BaseException:  # refused, timed out, cancelled: nothing may stay open
            await self._abandon_opening()
            raise
        self._opening = None
        return ws

    async def _closed_while_opening(self, exc: ConnectionClosed) -> ProviderError:
        ws = self._opening
        if ws is not None:
            with contextlib.suppress(ConnectionClosed):
                while True:  # messages that arrived before the close are still readable
                    for event in self._translate(await ws.recv()):
                        if isinstance(event, ev.Error) and event.fatal:
                            return ProviderError(event.message, code=event.code, fatal=True)
                        self._events.put_nowait(event)
        code = exc.rcvd.code if exc.rcvd is not None else 1006
        reason = exc.rcvd.reason if exc.rcvd is not None else ""
        error = self._fatal_close(code, reason)
        if error is not None:
            return ProviderError(error.message, code=error.code, fatal=True)
        return ProviderError(f"{self.name} closed the connection while it was set up ({code})")

    def _refused(self, status: int) -> ProviderError:
        return ProviderError(
            f"{self.name} refused the connection (HTTP {status})",
            code="provider_unavailable",
            fatal=400 <= status < 500 and status not in (408, 429),
        )

    async def _send_now(self, ws: ClientConnection, message: dict[str, Any]) -> None:
        text = json.dumps(message)
        await ws.send(text)
        self.observer.frame("out", len(text))
        self._sent(message)

    async def _run(self, ws: ClientConnection) -> None:
        try:
            while True:
                outcome = await self._serve(ws)
                if outcome in (Outcome.CLOSED, Outcome.FATAL) or self._closed:
                    return
                replacement = await self._replace(outcome)
                if replacement is None:
                    return
                old, ws = ws, replacement
                await self._close_socket(old, "replaced")
        finally:
            if self._ws is not None:
                await self._close_socket(self._ws, "closed by the bridge")
            self._events.put_nowait(None)

    async def _serve(self, ws: ClientConnection) -> Outcome:
        """Read and write one socket until it ends or should be replaced."""
        self._ws = ws
        loop = asyncio.get_running_loop()
        cap = self._session_cap()
        cap_at = loop.time() + cap if cap is not None else None
        writer = loop.create_task(self._write(ws), name=f"{self.name}-writer")
        self._writing = True
        try:
            while True:
                wakes = [t for t in (cap_at, self._wake_at()) if t is not None]
                deadline = min(wakes) if wakes and min(wakes) > loop.time() else None
                try:
                    async with asyncio.timeout_at(deadline) as self._recv_timeout:
                        raw = await ws.recv()
                except TimeoutError:
                    raw = None
                finally:
                    self._recv_timeout = None
                if raw is not None:
                    self.observer.frame("in", len(raw))
                    for event in self._translate(raw):
                        self._events.put_nowait(event)
                verdict = self._verdict(cap_at is not None and loop.time() >= cap_at)
                if verdict is not None:
                    return verdict
        except ConnectionClosed as exc:
            return self._closed_outcome(exc)
        finally:
            self._writing = False
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await writer

    def _translate(self, raw: str | bytes) -> list[ev.Event]:
        """:meth:`_receive`, isolated: one message it cannot handle is counted and skipped."""
        try:
            return self._receive(raw)
        except Exception:
            self.malformed_messages += 1
            log.warning("%s: a message could not be handled", self.name, exc_info=True)
            return []

    def _closed_outcome(self, exc: ConnectionClosed) -> Outcome:
        code = exc.rcvd.code if exc.rcvd is not None else 1006
        reason = exc.rcvd.reason if exc.rcvd is not None else ""
        self.observer.closed(code, redact(reason))
        if self._closed:
            return Outcome.CLOSED
        verdict = self._verdict(False)
        if verdict is not None:
            return verdict
        error = self._fatal_close(code, reason)
        if error is not None:
            self._events.put_nowait(error)
            return Outcome.FATAL
        log.warning("%s socket dropped (%d %s); reconnecting", self.name, code, redact(reason))
        return Outcome.TRANSIENT

    async def _write(self, ws: ClientConnection) -> None:
        """Control messages first, then queued audio (merged when it has piled up)."""
        while True:
            if self._control:
                await self._send_now(ws, self._control.popleft())
            elif self._audio:
                await self._send_now(ws, self._audio_message(self._take_audio()))
            else:
                self._wake.clear()
                await self._wake.wait()

    async def _replace(self, outcome: Outcome) -> ClientConnection | None:
        """The next socket after a renewal or a drop; None when it could not be had."""
        if outcome is Outcome.RENEW:
            self.renewals += 1
            log.info("%s: renewing the session", self.name)
            try:
                return await self._open_safely()
            except ProviderError as exc:
                if exc.fatal:
                    self._events.put_nowait(ev.Error(exc.code, exc.message, fatal=True))
                    return None
        attempts = self._options.reconnects
        for attempt in range(attempts):
            await asyncio.sleep(min(0.25 * 2**attempt, 4.0) * random.uniform(0.5, 1.5))
            try:
                ws = await self._open_safely()
            except ProviderError as exc:
                if exc.fatal:
                    self._events.put_nowait(ev.Error(exc.code, exc.message, fatal=True))
                    return None
                continue
            self.reconnects += 1
            return ws
        self._events.put_nowait(
            ev.Error(
                "provider_unavailable",
                f"lost the connection to {self.name} and could not reconnect ({attempts} tries)",
                fatal=True,
            )
        )
        return None
