"""One call: a WebRTC peer bridged to one provider session.

:class:`CallSession` is the single owner of everything a call creates: the peer connection,
the outbound track, the provider session and every task. Whatever ends the call (the peer
closes or fails, it never connects, its audio stops, the provider fails, or someone DELETEs the
session) calls :meth:`CallSession.end`; that runs :meth:`_shutdown` exactly once, which closes
all of it and removes the session from the registry. States only move forward:

    NEW -> CONNECTING -> ACTIVE -> CLOSING -> CLOSED
              \\_____________________/^
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

import numpy as np
from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcdatachannel import RTCDataChannel
from av import AudioFrame

from bridge.audio import g711
from bridge.audio.format import PCM16_24K
from bridge.audio.resample import Resampler, split
from bridge.core import events as ev
from bridge.core.errors import BadRequest, BridgeError
from bridge.core.metrics import Metrics
from bridge.core.redact import redact
from bridge.core.session_config import SessionConfig
from bridge.providers import Provider
from bridge.server.config import Settings
from bridge.transports.webrtc import datachannel, dtls, jitter
from bridge.transports.webrtc.ice import rtc_configuration
from bridge.transports.webrtc.inbound import InboundAudio
from bridge.transports.webrtc.outbound import OPUS, PCMA, PCMU, OutboundAudioTrack
from bridge.transports.webrtc.sdp import answer_codec, check_offer, payload_types

log = logging.getLogger(__name__)

EVENTS_CHANNEL = "events"
MAX_PENDING_EVENTS = 512
MAX_CHANNEL_MESSAGE = 64 * 1024  # bytes, in either direction
MAX_CHANNEL_BACKLOG = 1024 * 1024  # bytes queued in SCTP before events are dropped
MAX_CLIENT_BACKLOG = 64
CLOSE_FLUSH_S = 0.2
ERROR_DELIVERY_GRACE_S = 5.0
GRACE_REASONS = ("provider_error", "provider_closed")


class State(enum.Enum):
    NEW = "new"
    CONNECTING = "connecting"
    ACTIVE = "active"
    CLOSING = "closing"
    CLOSED = "closed"


class CallSession:
    """A bridged call; see the module docstring for its life cycle."""

    def __init__(
        self,
        *,
        session_id: str,
        settings: Settings,
        provider: Provider,
        config: SessionConfig,
        kind: str = "offer",
        on_closed: Callable[[CallSession], None] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.id = session_id
        self.kind = kind
        self.settings = settings
        self.provider = provider
        self.config = config
        self.state = State.NEW
        self.created_at = time.time()
        self.close_reason: str | None = None
        self.codec: str | None = None
        self.input_format = PCM16_24K
        self.metrics = metrics
        self.track = OutboundAudioTrack(max_buffer_ms=settings.max_reply_buffer_ms, metrics=metrics)
        self._on_closed = on_closed
        self._pc = RTCPeerConnection(rtc_configuration(settings.ice_servers))
        self._channel: RTCDataChannel | None = None
        self._pending: deque[str] = deque(maxlen=MAX_PENDING_EVENTS)
        self._tasks: set[asyncio.Task[None]] = set()
        self._connected = asyncio.Event()
        self._channel_open = asyncio.Event()
        self._inbound: InboundAudio | None = None
        self._remote_audio: MediaStreamTrack | None = None
        self._shutdown_task: asyncio.Task[None] | None = None
        self._client_events: asyncio.Queue[dict[str, Any]] = asyncio.Queue(MAX_CLIENT_BACKLOG)
        self.audio_in_ms = 0
        self.events_sent = 0
        self.events_dropped = 0
        self.max_message_bytes = MAX_CHANNEL_MESSAGE  # what the peer's SCTP takes, at most ours
        self._answered = False
        self.cost_usd: float | None = 0.0  # None once any usage could not be priced
        self.usage_events = 0

    # -- life cycle ----------------------------------------------------------------------------

    async def start(self, offer_sdp: object) -> str:
        """Answer the peer's offer and start the call; returns the answer SDP.

        Raises :class:`BadRequest` for an offer we can't use; the session is then already
        closed and has left nothing behind.
        """
        offer = check_offer(offer_sdp)
        assert isinstance(offer_sdp, str)
        limit = offer.max_message_size
        self.max_message_bytes = min(limit, MAX_CHANNEL_MESSAGE) if limit else MAX_CHANNEL_MESSAGE
        self.state = State.CONNECTING
        pc = self._pc
        pc.on("track", self._on_track)
        pc.on("datachannel", self._on_datachannel)
        pc.on("connectionstatechange", self._on_connection_state)
        try:
            transceiver = pc.addTransceiver(self.track, direction="sendrecv")
            transceiver.setCodecPreferences(_codec_preferences(offer.audio.codecs))
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
            dtls.answer_as_server(pc, offer.audio.setup)
            await pc.setLocalDescription(await pc.createAnswer())
            codec = answer_codec(pc.localDescription.sdp)
        except BadRequest:
            await self.close("bad_offer")
            raise
        except Exception as exc:  # aiortc raises ValueError, OperationError, KeyError...
            await self.close("bad_offer")
            raise BadRequest(f"the offer could not be used: {exc}", code="invalid_sdp") from None
        self.codec = codec.name
        self.track.set_codec(codec)
        self.input_format, output_format = self.provider.configure_audio(codec.name.lower())
        self.track.set_source(output_format)
        self.track.set_policy(self.provider.playout)
        if self.settings.receive_jitter == "immediate":
            loop = asyncio.get_running_loop()
            inbound = InboundAudio(
                payload_types(pc.localDescription.sdp),
                self.input_format,
                self._deliver,
                loop.time,
                self.metrics.uplink if self.metrics is not None else None,
            )
            if jitter.install(transceiver.receiver, inbound):
                self._inbound = inbound
        if self._inbound is not None:
            # The fast path decodes packets as they arrive; the track stays empty.
            self._spawn(self._watch_inbound(self._inbound), "inbound-watchdog")
        elif self._remote_audio is not None:
            self._spawn(self._pump_inbound(self._remote_audio), "inbound")
        self._spawn(self._watch_connect(), "connect-watchdog")
        self._spawn(self._run_provider(), "provider")
        self._spawn(self._serve_client_events(), "client-events")
        self._answered = True
        return str(pc.localDescription.sdp)

    def end(self, reason: str) -> None:
        """End the call (idempotent); the first reason given is the one reported."""
        if self._shutdown_task is not None:
            return
        self.close_reason = reason
        self.state = State.CLOSING
        log.info("session %s ending: %s", self.id, reason)
        self._shutdown_task = asyncio.get_running_loop().create_task(
            self._shutdown(), name=f"session-{self.id}-shutdown"
        )

    async def close(self, reason: str = "closed") -> None:
        """End the call and wait until everything it owned is closed."""
        self.end(reason)
        assert self._shutdown_task is not None
        await asyncio.shield(self._shutdown_task)

    async def _shutdown(self) -> None:
        try:
            self._send_wire({"type": "close", "reason": self.close_reason})
            # A call that failed before the peer was up (e.g. a bad provider key): give the
            # peer a short while to open its channel so it learns why. Not for ends the peer
            # asked for, or that no peer can hear.
            answered = self._answered and self._pc.connectionState in ("new", "connecting")
            if self._pending and answered and self.close_reason in GRACE_REASONS:
                with contextlib.suppress(TimeoutError):
                    grace = min(ERROR_DELIVERY_GRACE_S, self.settings.connect_timeout)
                    await asyncio.wait_for(self._channel_open.wait(), grace)
            await self._flush_channel()
            current = asyncio.current_task()
            tasks = [t for t in self._tasks if t is not current]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            with contextlib.suppress(Exception):
                await self.provider.close()
            self.track.stop()
            with contextlib.suppress(Exception):
                await self._pc.close()
        finally:
            self.state = State.CLOSED
            if self._on_closed is not None:
                self._on_closed(self)
            log.info("session %s closed", self.id)

    async def _flush_channel(self) -> None:
        """Give the ``close`` event a moment to leave before the transport goes away."""
        channel = self._channel
        deadline = asyncio.get_running_loop().time() + CLOSE_FLUSH_S
        while (  # noqa: ASYNC110 - aiortc signals no "drained" event below its threshold
            channel is not None
            and channel.readyState == "open"
            and channel.bufferedAmount > 0
            and asyncio.get_running_loop().time() < deadline
        ):
            await asyncio.sleep(0.01)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=f"session-{self.id}-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "session %s: task %s failed", self.id, task.get_name(), exc_info=task.exception()
            )
            self.end("internal_error")

    # -- peer connection -----------------------------------------------------------------------

    async def _watch_connect(self) -> None:
        try:
            await asyncio.wait_for(self._connected.wait(), self.settings.connect_timeout)
        except TimeoutError:
            self.end("connect_timeout")

    def _on_connection_state(self) -> None:
        state = self._pc.connectionState
        if state == "connected":
            if self.state is State.CONNECTING:
                self.state = State.ACTIVE
            self._connected.set()
        elif state in ("failed", "closed"):
            self.end(f"peer_{state}")

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            self._remote_audio = track  # read (or watched) once negotiation is done
        else:
            self._spawn(_drain(track), f"drain-{track.kind}")

    def _deliver(self, audio: bytes) -> None:
        """Inbound audio in the provider's format, from the fast path."""
        self.audio_in_ms += self.input_format.bytes_to_ms(len(audio))
        self.provider.send_audio(audio)

    async def _watch_inbound(self, inbound: InboundAudio) -> None:
        """End the call when the peer's audio stops (the fast path has no recv() to time)."""
        await self._connected.wait()
        loop = asyncio.get_running_loop()
        timeout = self.settings.inactivity_timeout
        since = loop.time()
        while True:
            idle = loop.time() - (inbound.last_packet_at or since)
            if idle >= timeout:
                self.end("inactive")
                return
            await asyncio.sleep(min(timeout - idle, 1.0) + 0.005)

    async def _pump_inbound(self, track: MediaStreamTrack) -> None:
        """Peer audio -> one stateful resampler -> pieces of at most 20 ms -> provider.

        For a G.711 provider the decoded 8 kHz samples are re-encoded, not resampled (mu-law
        decode then encode gives back the peer's own bytes).
        """
        await self._connected.wait()
        fmt = self.input_format
        resampler = Resampler(fmt.rate)
        chunk = fmt.rate * 20 // 1000
        timeout = self.settings.inactivity_timeout
        metrics = self.metrics
        clock = asyncio.get_running_loop().time
        while True:
            try:
                async with asyncio.timeout(timeout):
                    frame = await track.recv()
            except TimeoutError:
                self.end("inactive")
                return
            except MediaStreamError:
                self.end("peer_closed")
                return
            if not isinstance(frame, AudioFrame):
                continue
            received = clock()
            for piece in split(resampler.resample(frame), chunk):
                self.audio_in_ms += len(piece) * 500 // fmt.rate
                if fmt.is_g711:
                    piece = g711.encode(np.frombuffer(piece, dtype="<i2"), fmt.encoding)
                self.provider.send_audio(piece)
            if metrics is not None:
                metrics.uplink((clock() - received) * 1000)

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        if channel.label != EVENTS_CHANNEL or self._channel is not None:
            return
        self._channel = channel
        channel.on("message", self._on_message)
        if channel.readyState == "open":
            self._flush_pending()
        else:
            channel.on("open", self._flush_pending)

    def _flush_pending(self) -> None:
        self._channel_open.set()
        while self._pending and self._channel is not None:
            self._send_text(self._pending.popleft(), essential=True)

    # -- client -> provider --------------------------------------------------------------------

    def _on_message(self, message: str | bytes) -> None:
        """A client message, from inside aiortc's receive loop: nothing may escape from here
        (an exception would end the peer's whole transport)."""
        if self.state not in (State.CONNECTING, State.ACTIVE):
            return
        try:
            self._client_events.put_nowait(datachannel.parse(message, MAX_CHANNEL_MESSAGE))
        except asyncio.QueueFull:
            self._send_event(ev.Error("rate_limited", "too many messages; slow down"))
        except BadRequest as exc:
            self._send_event(ev.Error(exc.code, exc.message))
        except Exception:
            log.exception("session %s: a client message could not be handled", self.id)
            self._send_event(ev.Error("invalid_event", "the message could not be handled"))

    async def _serve_client_events(self) -> None:
        """Apply client messages one at a time, in the order they arrived."""
        while True:
            await self._handle_client_event(await self._client_events.get())

    async def _handle_client_event(self, data: dict[str, Any]) -> None:
        kind = data["type"]
        try:
            if kind == "session.update":
                config = self.config.merged(data.get("session"))
                self.config = await self.provider.update_session(config)
            elif kind == "text":
                text = data.get("text")
                if not isinstance(text, str) or not text.strip():
                    raise BadRequest("'text' must be a non-empty string", code="invalid_event")
                if len(text) > self.settings.max_text_chars:
                    raise BadRequest(
                        f"'text' is over {self.settings.max_text_chars} characters",
                        code="invalid_event",
                    )
                await self.provider.send_text(text)
            else:
                raise BadRequest(
                    f"unknown event type {datachannel.shown(kind)} "
                    "(expected session.update or text)",
                    code="unknown_event",
                )
        except BridgeError as exc:
            self._send_event(ev.Error(exc.code, exc.message))
        except Exception:  # one bad message must not end the call
            log.exception("session %s: client event %s failed", self.id, datachannel.shown(kind))
            self._send_event(ev.Error("internal_error", "the message could not be applied"))

    # -- provider -> client --------------------------------------------------------------------

    async def _run_provider(self) -> None:
        try:
            async with asyncio.timeout(self.settings.provider_connect_timeout):
                await self.provider.connect()
        except (BridgeError, TimeoutError, OSError) as exc:
            if isinstance(exc, BridgeError):
                code, message = exc.code, exc.message
            else:
                code, message = "provider_unavailable", "the provider did not answer"
            self._send_event(ev.Error(code, message, fatal=True))
            self.end("provider_error")
            return
        async for event in self.provider.events():
            if isinstance(event, ev.AudioOut):
                self.track.push(event.pcm, event.item_id)
                continue
            if isinstance(event, ev.AudioDone):
                self.track.end_of_reply(event.item_id)
                continue
            if isinstance(event, ev.SpeechStarted):
                # Barge-in: cut playback before anything else, then tell the provider
                # how much of its reply the user actually heard.
                played = self.track.flush()
                self._send_event(event)
                await self.provider.interrupt(played)
                continue
            if isinstance(event, ev.Interrupted):
                self.track.flush()
            elif isinstance(event, ev.TurnComplete):
                self.track.end_of_reply()
            elif isinstance(event, ev.Usage):
                # Every usage report is billed on its own (Gemini re-bills the context each
                # turn): the call's cost is their sum.
                self.usage_events += 1
                if self.cost_usd is not None and event.cost_usd is not None:
                    self.cost_usd = round(self.cost_usd + event.cost_usd, 8)
                else:
                    self.cost_usd = None
            self._send_event(event)
            if isinstance(event, ev.Error) and event.fatal:
                self.end("provider_error")
                return
        self.end("provider_closed")

    def _send_event(self, event: ev.Event) -> None:
        if isinstance(event, ev.Error):
            # Provider messages can quote credentials (OpenAI echoes part of a wrong key).
            secrets = (self.settings.openai_api_key, self.settings.gemini_api_key)
            event = ev.Error(event.code, redact(event.message, secrets), event.fatal)
        wire = ev.to_wire(event)
        if wire is not None:
            self._send_wire(wire)

    def _send_wire(self, wire: dict[str, Any]) -> None:
        for text in datachannel.encode(wire, self.max_message_bytes):
            self._send_text(text, essential=wire.get("type") in ("error", "close"))

    def _send_text(self, text: str, essential: bool) -> None:
        channel = self._channel
        if channel is not None and channel.readyState == "open":
            if channel.bufferedAmount > MAX_CHANNEL_BACKLOG and not essential:
                self.events_dropped += 1  # the peer reads slower than events come
                return
            try:
                channel.send(text)
            except Exception as exc:  # aiortc refuses sends on a closing channel, etc.
                self.events_dropped += 1
                log.warning("session %s: an event could not be sent: %s", self.id, exc)
                return
            self.events_sent += 1
        elif self.state is not State.CLOSED:
            self._pending.append(text)

    # -- reporting -----------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """What ``GET /sessions`` shows; never includes secrets."""
        return {
            "id": self.id,
            "kind": self.kind,
            "state": self.state.value,
            "provider": self.provider.name,
            "model": self.provider.model,
            "codec": self.codec,
            "provider_audio": {
                "input": self.input_format.encoding,
                "input_rate": self.input_format.rate,
                "output_passthrough": self.track.passthrough,
            },
            "created_at": self.created_at,
            "audio_in_ms": self.audio_in_ms,
            "reply_buffered_ms": self.track.buffered_ms,
            "cost_usd": self.cost_usd,
            "usage_reports": self.usage_events,
            "close_reason": self.close_reason,
            "provider_stats": self.provider.stats(),
            "reply_dropped_ms": self.track.dropped_ms,
            "events_dropped": self.events_dropped,
        }


def _codec_preferences(offered: tuple[str, ...]) -> list[Any]:
    """Opus for browsers; G.711 for telephony peers, in the order the peer listed them."""
    ours = {c.name.lower() for c in (OPUS, PCMU, PCMA)}
    order = ["opus"] + [c for c in offered if c in ours and c != "opus"]
    caps = RTCRtpSender.getCapabilities("audio").codecs
    by_name = {c.mimeType.split("/")[1].lower(): c for c in caps}
    return [by_name[name] for name in order if name in by_name]


async def _drain(track: MediaStreamTrack) -> None:
    """Read and drop a track we don't use: aiortc queues unread frames without limit."""
    with contextlib.suppress(MediaStreamError):
        while True:
            await track.recv()
