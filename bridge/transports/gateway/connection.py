"""One gateway client: an OpenAI Realtime client on a WebSocket, as a conversation's transport.

Two framings of the same protocol: the *envelope* mode (``gateway_path``) wraps each server
event as ``{"event": "realtime", "data": <event>}`` and adds bridge-level messages with other
``event`` names (``error`` for the bridge's own refusals, ``usage`` with the cost in USD,
``stats`` on request, ``close`` with the final figures); the *raw* mode (``/v1/realtime``) is
the OpenAI protocol unchanged, so the official SDKs work against it.

Behind OpenAI the client's events pass through (after the policy) and OpenAI's server events
come back as they were sent; the conversation still reads them for usage, costs, hooks and the
registry. Behind any other provider a :class:`~.translate.Translator` plays OpenAI's server.

Everything for the client goes through one bounded outbox and one writer task, so that a
client that stops reading ends its own call (``client_too_slow``) instead of holding memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from collections import deque
from typing import Any

from aiohttp import WSMsgType, web

from bridge.audio.playout import Playback
from bridge.core import commands as cmd
from bridge.core import events as ev
from bridge.core.conversation import CloseReason, Conversation
from bridge.protocols.openai_server import (
    ProtocolError,
    ServerEvents,
    decode_append,
    event_id_of,
    format_of,
    parse_client_event,
)
from bridge.transports.gateway.policy import POLICY_CODES, GatewayPolicy
from bridge.transports.gateway.translate import Translator

log = logging.getLogger(__name__)

MAX_PENDING_BYTES = 8 * 1024 * 1024  # unread output a client may leave queued
CLOSE_GRACE_S = 2.0  # to deliver what is queued (a final error) before the close frame
CLIENT_PING_S = 30.0  # a client that stops answering pings is gone
OUR_EVENT_IDS = "gw_"  # event ids the gateway gives client events that came without one
BRIDGE_REQUESTS = {"bridge.stats"}  # envelope mode: asks for a ``stats`` message
CLOSE_CODES: dict[str, int] = {
    CloseReason.PROVIDER_ERROR: 1011,
    CloseReason.INTERNAL_ERROR: 1011,
    CloseReason.SERVER_SHUTDOWN: 1001,
    CloseReason.CLIENT_TOO_SLOW: 1008,
}


class GatewaySocket(web.WebSocketResponse):
    """aiohttp closes an oversized message's socket with 1009 and no reason; say why."""

    def __init__(self, max_msg_size: int) -> None:
        super().__init__(max_msg_size=max_msg_size, heartbeat=CLIENT_PING_S, compress=False)
        self.limit = max_msg_size

    async def close(self, *, code: int = 1000, message: bytes = b"", drain: bool = True) -> bool:
        if code == 1009 and not message:
            message = f"message too big: the limit is {self.limit} bytes".encode()
        return await super().close(code=code, message=message, drain=drain)


class _ClientSink:
    """Reply audio for the client: deltas from the translator, or nothing when OpenAI's own
    deltas pass through. The client knows what it played, so a flush reports nothing (it
    truncates by itself)."""

    def __init__(self, call: GatewayCall) -> None:
        self._call = call

    def push(self, data: bytes, item_id: str) -> None:
        translator = self._call.translator
        if translator is not None:
            for event in translator.audio_out(data):
                self._call.send_event(event)

    def end_of_reply(self, item_id: str | None = None) -> None:
        pass

    def flush(self) -> Playback | None:
        return None


class GatewayCall:
    """See the module docstring."""

    kind = "gateway"

    def __init__(
        self,
        conversation: Conversation,
        ws: GatewaySocket,
        *,
        envelope: bool,
        policy: GatewayPolicy,
        translator: Translator | None,
    ) -> None:
        self.conversation = conversation
        self.ws = ws
        self.envelope = envelope
        self.policy = policy
        self.translator = translator
        # Behind OpenAI, the gateway's own events (errors) get ids OpenAI's can't collide with.
        self._events = translator.events if translator is not None else ServerEvents("event_gw")
        self._outbox: deque[str] = deque()
        self._pending_bytes = 0
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._closing = False
        self._ids = itertools.count(1)
        self.client_events = 0
        self.refused_events = 0
        conversation.attach(self, _ClientSink(self), self._on_event)

    # -- to the client -------------------------------------------------------------------------

    def _put(self, text: str) -> None:
        if self._closing:
            return
        self._outbox.append(text)
        self._pending_bytes += len(text)
        self._wake.set()
        if self._pending_bytes > MAX_PENDING_BYTES:
            log.warning("gateway %s: the client stopped reading", self.conversation.id)
            self._outbox.clear()
            self._pending_bytes = 0
            self.conversation.end(CloseReason.CLIENT_TOO_SLOW)

    def send_event(self, event: dict[str, Any]) -> None:
        """A server event of the OpenAI protocol."""
        data = json.dumps(event)
        self._put('{"event":"realtime","data":' + data + "}" if self.envelope else data)

    def send_raw(self, raw: str | bytes) -> None:
        """A server event exactly as OpenAI sent it."""
        data = raw if isinstance(raw, str) else raw.decode("utf-8", errors="replace")
        self._put('{"event":"realtime","data":' + data + "}" if self.envelope else data)

    def send_bridge(self, name: str, data: Any) -> None:
        """A bridge-level message (envelope mode only; raw clients get OpenAI events only)."""
        if self.envelope:
            self._put(json.dumps({"event": name, "data": data}))

    def _refuse(self, error: ProtocolError) -> None:
        if error.event_id is not None and error.event_id.startswith(OUR_EVENT_IDS):
            error.event_id = None
        if self.envelope and error.code in POLICY_CODES | {"message_too_big"}:
            body = {
                "code": error.code,
                "message": error.message,
                "param": error.param,
                "event_id": error.event_id,
            }
            self.send_bridge("error", body)
        else:
            self.send_event(self._events.from_error(error))

    async def _write(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._outbox:
                    text = self._outbox.popleft()
                    self._pending_bytes -= len(text)
                    await self.ws.send_str(text)
        except (ConnectionError, RuntimeError):
            self.conversation.end(CloseReason.PEER_FAILED)

    # -- from the conversation -----------------------------------------------------------------

    def _on_event(self, event: ev.Event) -> None:
        if isinstance(event, ev.Close):
            return
        if self.translator is not None:
            for out in self.translator.provider_event(event):
                self.send_event(out)
            if isinstance(event, ev.TurnComplete):
                # Its usage may follow in the same provider message: settle once it is handled.
                asyncio.get_running_loop().call_soon(self._settle)
        elif isinstance(event, ev.Error):
            event_id = event.event_id
            if event_id is not None and event_id.startswith(OUR_EVENT_IDS):
                event_id = None
            kind = "server_error" if event.fatal else "invalid_request_error"
            self.send_event(
                self._events.error(event.code, event.message, event.param, event_id, kind)
            )
        if isinstance(event, ev.Usage):
            self.send_bridge(
                "usage",
                {
                    "usage": event.usage,
                    "cost_usd": event.cost_usd,
                    "session_cost_usd": self.conversation.cost_usd,
                },
            )

    def _settle(self) -> None:
        if self.translator is not None:
            for out in self.translator.settle():
                self.send_event(out)

    # -- from the client -----------------------------------------------------------------------

    async def serve(self) -> None:
        """Run the call until either side ends it."""
        conversation = self.conversation
        self._writer = asyncio.get_running_loop().create_task(
            self._write(), name=f"session-{conversation.id}-writer"
        )
        if self.translator is None:
            listener = getattr(conversation.provider, "raw_listener", "absent")
            assert listener is None, "pass-through needs a provider that hands out raw events"
            conversation.provider.raw_listener = self.send_raw  # type: ignore[attr-defined]
        else:
            for event in self.translator.start():
                self.send_event(event)
        conversation.start()
        conversation.peer_connected()
        try:
            async for message in self.ws:
                if message.type is WSMsgType.TEXT:
                    self._on_text(message.data)
                elif message.type is WSMsgType.BINARY:
                    self._refuse(
                        ProtocolError("invalid_event", "Send events as JSON text messages.")
                    )
                # ERROR (e.g. a message over the size limit) and CLOSE end the loop.
        finally:
            await conversation.close(CloseReason.CLIENT_CLOSED)

    def _on_text(self, raw: str) -> None:
        self.client_events += 1
        message: dict[str, Any] = {}
        try:
            message = parse_client_event_or_bridge(raw, self.envelope)
            if message["type"] in BRIDGE_REQUESTS:
                self.send_bridge("stats", self.conversation.describe())
                return
            message = self.policy.admit(message)
            if self.translator is None:
                self._pass_through(message)
            else:
                actions = self.translator.client_event(message)
                for event in actions.events:
                    self.send_event(event)
                for pcm in actions.audio:
                    self.conversation.send_audio(pcm)
                for command in actions.commands:
                    self.conversation.submit(command)
        except ProtocolError as exc:
            self.refused_events += 1
            exc.event_id = exc.event_id or event_id_of(message)
            self._refuse(exc)

    def _pass_through(self, message: dict[str, Any]) -> None:
        if message["type"] == "input_audio_buffer.append":
            self.conversation.send_audio(decode_append(message))
            return
        if not isinstance(message.get("event_id"), str):
            message = {**message, "event_id": f"{OUR_EVENT_IDS}{next(self._ids)}"}
        if message["type"] == "session.update" and isinstance(message.get("session"), dict):
            audio = message["session"].get("audio")
            audio = audio if isinstance(audio, dict) else {}
            fmt_in, fmt_out = format_of(audio.get("input")), format_of(audio.get("output"))
            if fmt_in is not None:  # for the call's audio figures
                self.conversation.input_format = fmt_in
            if fmt_out is not None:
                self.conversation.output_format = fmt_out
        self.conversation.submit(cmd.Relay(message))

    # -- Transport -----------------------------------------------------------------------------

    async def close(self, reason: str) -> None:
        """Deliver what is queued (a final error, the ``close`` message), then close."""
        if self._closing:
            return
        self.send_bridge("close", {"reason": reason, "session": self.conversation.describe()})
        self._closing = True
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_GRACE_S):
                while self._outbox and not self.ws.closed:
                    await self.ws.send_str(self._outbox.popleft())
        self._outbox.clear()
        code = CLOSE_CODES.get(reason, 1000)
        with contextlib.suppress(Exception):
            await self.ws.close(code=code, message=reason.encode()[:120])

    def describe(self) -> dict[str, Any]:
        return {
            "gateway_mode": "envelope" if self.envelope else "raw",
            "pass_through": self.translator is None,
            "client_events": self.client_events,
            "refused_events": self.refused_events,
        }


def parse_client_event_or_bridge(raw: str, envelope: bool) -> dict[str, Any]:
    """A client event; in envelope mode also a bridge request (``{"type": "bridge.stats"}``)."""
    try:
        return parse_client_event(raw)
    except ProtocolError as exc:
        if envelope and exc.param == "type":
            message = json.loads(raw)  # it parsed a moment ago
            if message.get("type") in BRIDGE_REQUESTS:
                return dict(message)
        raise
