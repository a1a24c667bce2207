"""The Twilio transport: one Media Streams WebSocket carrying one conversation.

Twilio dials ``GET /telephony/twilio`` (the URL the webhook's TwiML gave it) and sends
``connected``, ``start``, then ``media`` every 20 ms, ``dtmf``, ``mark`` echoes and finally
``stop``. ``start`` names the stream and carries the webhook's parameters (provider, model,
instructions, voice): the conversation is created then, listed in ``GET /sessions`` from that
moment, and fed the caller's audio (:mod:`.audio`); its replies go back through
:class:`~.playback.TwilioPlayback`. The conversation's other events have nowhere to go on this
socket (Twilio refuses unknown messages): errors are logged, the rest counted.

Every input is total: a message that is not JSON, has wrong types, undecodable audio, an
unknown event or is longer than ``MAX_EVENT_CHARS`` is counted and dropped, never fatal; only a
message over ``MAX_MESSAGE_BYTES`` closes the socket (1009), as does a ``start`` the bridge
cannot serve (1003 for another media format, 1008 otherwise, 1013 when full). A socket
without ``start`` within ``connect_timeout``, or silent for ``inactivity_timeout``, is closed.
The conversation ends when the socket closes or ``stop`` arrives; the socket is closed when
the conversation ends for any other reason (provider error 1011, deleted 1000, shutdown 1001).
Both ends are idempotent and leave no task behind.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from bridge.core import events as ev
from bridge.core.conversation import CloseReason, Conversation
from bridge.core.errors import BridgeError
from bridge.core.metrics import Metrics
from bridge.core.tasks import OwnedTasks
from bridge.server.config import Settings
from bridge.server.conversations import new_conversation
from bridge.server.keys import METRICS, REGISTRY, SETTINGS
from bridge.transports.twilio import messages as msg
from bridge.transports.twilio.audio import TWILIO_FORMAT, Uplink
from bridge.transports.twilio.playback import TwilioPlayback

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 1024 * 1024  # larger closes the socket (1009)
MAX_EVENT_CHARS = 64 * 1024  # longer is dropped and counted (a media frame is ~300)
CLOSE_CODES: dict[str, WSCloseCode] = {
    CloseReason.PROVIDER_ERROR: WSCloseCode.INTERNAL_ERROR,
    CloseReason.INTERNAL_ERROR: WSCloseCode.INTERNAL_ERROR,
    CloseReason.SERVER_SHUTDOWN: WSCloseCode.GOING_AWAY,
}
REFUSALS: dict[str, WSCloseCode] = {  # why a start is refused -> close code
    "unsupported_media_format": WSCloseCode.UNSUPPORTED_DATA,
    "at_capacity": WSCloseCode.TRY_AGAIN_LATER,
}
MAX_CLOSE_REASON_BYTES = 123  # RFC 6455
CLOSE_TIMEOUT_S = 1.0  # for Twilio's answer to our close frame
INTERNAL_ERROR = "internal error"  # a message the bridge failed on (a bug): counted


class TwilioStream:
    """See the module docstring."""

    kind = "twilio"

    def __init__(self, app: web.Application, ws: web.WebSocketResponse) -> None:
        self.app = app
        self.settings: Settings = app[SETTINGS]
        self.metrics: Metrics | None = app.get(METRICS)
        self.ws = ws
        self.conversation: Conversation | None = None
        self.playback: TwilioPlayback | None = None
        self.stream_sid = ""
        self.call_sid = ""
        self._uplink: Uplink | None = None
        self._tasks: OwnedTasks | None = None
        self._closed = False
        self._received_at = 0.0  # loop time the message being handled arrived
        self.media_in = 0
        self.dtmf = 0
        self.events_dropped = 0  # conversation events with nowhere to go
        self.dropped: dict[str, int] = {}  # reason -> messages dropped

    # -- the socket ----------------------------------------------------------------------------

    async def serve(self) -> None:
        """Read until the socket closes; then end the conversation and wait until it has."""
        reason = CloseReason.PEER_CLOSED
        try:
            while not self._closed:
                started = self.conversation is not None
                timeout = (
                    self.settings.inactivity_timeout if started else self.settings.connect_timeout
                )
                try:
                    message = await self.ws.receive(timeout=timeout)
                except TimeoutError:
                    reason = CloseReason.INACTIVE if started else CloseReason.CONNECT_TIMEOUT
                    break
                if message.type is WSMsgType.TEXT:
                    self._received_at = asyncio.get_running_loop().time()
                    await self._handle(message.data)
                elif message.type is WSMsgType.BINARY:
                    self._drop("binary message")
                else:  # CLOSE, CLOSING, CLOSED, ERROR (e.g. over MAX_MESSAGE_BYTES)
                    break
        finally:
            if self.conversation is not None:
                await self.conversation.close(reason)
            else:
                await self._close_socket(reason)

    async def _handle(self, text: str) -> None:
        """One message; whatever goes wrong with it, the call goes on."""
        try:
            await self._on_text(text)
        except Exception:
            self._drop(INTERNAL_ERROR)
            if self.dropped[INTERNAL_ERROR] == 1:  # once per call, not 50 times a second
                log.exception("session %s: a Twilio message could not be handled", self.id)

    async def _on_text(self, text: str) -> None:
        if len(text) > MAX_EVENT_CHARS:
            self._drop("oversized")
            return
        try:
            message = msg.parse(text)
        except msg.Malformed as exc:
            if exc.event == "start" and self.conversation is None:
                log.info("twilio stream refused: %s", exc.reason)
                await self._close_socket("invalid_start", WSCloseCode.POLICY_VIOLATION)
            else:
                self._drop(exc.reason)
            return
        match message:
            case msg.Media():
                self._on_media(message)
            case msg.Mark(name=name):
                if self.playback is None:
                    self._drop("mark before start")
                else:
                    self.playback.mark_echoed(name)
            case msg.Start():
                await self._on_start(message)
            case msg.Dtmf():
                self.dtmf += 1  # counted, not bridged
            case msg.Stop():
                if self.conversation is not None:
                    self.conversation.end(CloseReason.PEER_CLOSED)
                else:
                    self._closed = True
            case msg.Connected():
                pass
            case msg.Unknown():
                self._drop("unknown event")

    def _on_media(self, media: msg.Media) -> None:
        conversation, uplink = self.conversation, self._uplink
        if conversation is None or uplink is None:
            self._drop("media before start")
            return
        if media.track != "inbound":
            self._drop("media of another track")
            return
        self.media_in += 1
        audio = uplink.convert(media.audio)
        if audio:
            conversation.send_audio(audio)
        if self.metrics is not None:  # from the message's arrival (parsing included)
            elapsed = asyncio.get_running_loop().time() - self._received_at
            self.metrics.uplink(elapsed * 1000)

    def _drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        log.debug("twilio stream %s: dropped a message: %s", self.stream_sid or "-", reason)

    # -- start: the conversation ---------------------------------------------------------------

    async def _on_start(self, start: msg.Start) -> None:
        if self.conversation is not None:
            self._drop("second start")
            return
        problem = start.format_problem()
        try:
            if problem is not None:
                raise BridgeError(problem, code="unsupported_media_format")
            params = start.parameters
            session = {k: params[k] for k in ("instructions", "voice") if k in params}
            conversation = new_conversation(
                self.app, params.get("provider") or None, params.get("model") or None, session
            )
            self.app[REGISTRY].add(conversation)
        except BridgeError as exc:
            log.info("twilio stream %s refused: %s: %s", start.stream_sid, exc.code, exc.message)
            code = REFUSALS.get(exc.code, WSCloseCode.POLICY_VIOLATION)
            await self._close_socket(exc.code, code)
            return
        self.stream_sid, self.call_sid = start.stream_sid, start.call_sid
        self.conversation = conversation
        input_format, output_format = conversation.configure_audio(TWILIO_FORMAT.encoding)
        self._uplink = Uplink(input_format)
        self.playback = TwilioPlayback(
            output_format,
            conversation.provider.playout,
            max_buffer_ms=self.settings.max_reply_buffer_ms,
            metrics=self.metrics,
        )
        conversation.attach(self, self.playback, self._on_event)
        self._tasks = OwnedTasks(
            conversation.id, lambda: conversation.end(CloseReason.INTERNAL_ERROR)
        )
        self._tasks.spawn(self.playback.run(self.stream_sid, self._send), "twilio-playback")
        conversation.start()
        conversation.peer_connected()  # Twilio is on the line already
        log.info("twilio stream %s (call %s): session %s", self.stream_sid, self.call_sid, self.id)

    @property
    def id(self) -> str:
        return self.conversation.id if self.conversation is not None else ""

    def _on_event(self, event: ev.Event) -> None:
        if isinstance(event, ev.Error):
            log.warning("session %s: %s: %s", self.id, event.code, event.message)
        elif not isinstance(event, ev.Close):
            self.events_dropped += 1

    async def _send(self, text: str) -> None:
        if self._closed or self.ws.closed:
            return
        try:
            await self.ws.send_str(text)
        except (ConnectionError, RuntimeError) as exc:  # the socket is going away
            log.debug("session %s: send failed: %s", self.id, exc)
            if self.conversation is not None:
                self.conversation.end(CloseReason.PEER_CLOSED)

    async def shutdown(self) -> None:
        """The server is stopping: end the call (or close a socket that never started one)."""
        if self.conversation is not None:
            await self.conversation.close(CloseReason.SERVER_SHUTDOWN)
        else:
            await self._close_socket(CloseReason.SERVER_SHUTDOWN)

    # -- Transport -----------------------------------------------------------------------------

    async def close(self, reason: str) -> None:
        """Stop sending and close the socket (the conversation is ending); idempotent."""
        if self._tasks is not None:
            await self._tasks.cancel_all()
        await self._close_socket(reason)

    async def _close_socket(self, reason: str, code: int | None = None) -> None:
        self._closed = True
        if self.ws.closed:
            return
        code = code if code is not None else CLOSE_CODES.get(reason, WSCloseCode.OK)
        message = reason.encode()[:MAX_CLOSE_REASON_BYTES]
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S):  # a peer that stopped reading
                await self.ws.close(code=code, message=message)
        except Exception as exc:  # a vanished peer: nothing left to tell it
            log.debug("twilio stream %s: close failed: %r", self.stream_sid or "-", exc)

    def describe(self) -> dict[str, Any]:
        playback, ledger = self.playback, self.playback.ledger if self.playback else None
        uplink = self._uplink
        return {
            "codec": "PCMU",
            "provider_audio": {
                "input": uplink.target.encoding if uplink else None,
                "input_rate": uplink.target.rate if uplink else None,
                "output_passthrough": playback.downlink.passthrough if playback else None,
            },
            "reply_buffered_ms": playback.buffered_ms if playback else 0,
            "reply_dropped_ms": playback.dropped_ms if playback else 0,
            "reply_underruns": playback.buffer.rebuffers if playback else 0,
            "twilio": {
                "stream_sid": self.stream_sid,
                "call_sid": self.call_sid,
                "media_in": self.media_in,
                "media_out": playback.frames_sent if playback else 0,
                "marks_sent": ledger.sent if ledger else 0,
                "marks_confirmed": ledger.confirmed if ledger else 0,
                "marks_pending": ledger.pending if ledger else 0,
                "marks_cleared": ledger.cleared if ledger else 0,
                "marks_unknown": ledger.unknown if ledger else 0,
                "clears_sent": playback.clears_sent if playback else 0,
                "dtmf": self.dtmf,
                "dropped": dict(self.dropped),
                "dropped_total": sum(self.dropped.values()),
                "events_dropped": self.events_dropped,
            },
        }
