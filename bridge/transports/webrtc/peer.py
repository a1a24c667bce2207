"""The WebRTC transport: one peer connection carrying one conversation.

:class:`WebRTCCall` owns what WebRTC needs and nothing else: the ``RTCPeerConnection`` (SDP,
ICE, DTLS), the inbound decoder (:mod:`.inbound`, installed as the receiver's jitter buffer),
the outbound track (:mod:`.outbound`, the conversation's playback sink), the media fast path
that moves both once the peer is connected (:mod:`.fastpath`) and the ``events`` data
channel (:mod:`.datachannel`: client messages become conversation commands, conversation
events become JSON messages that fit the peer's limit).
It ends its conversation when the peer closes or fails, never connects (``connect_timeout``)
or stops sending audio (``inactivity_timeout``); the conversation closes the call when it ends
for any other reason. Both ends are idempotent. ``describe()`` adds the network figures (RTT,
jitter, loss and the types of the selected ICE candidate pair), refreshed every 2 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcdatachannel import RTCDataChannel

from bridge.core import events as ev
from bridge.core.conversation import CloseReason, Conversation, State
from bridge.core.errors import BadRequest
from bridge.core.metrics import Metrics
from bridge.core.tasks import OwnedTasks
from bridge.transports.webrtc import datachannel, dtls, fastpath, jitter
from bridge.transports.webrtc.ice import IceServer, rtc_configuration
from bridge.transports.webrtc.inbound import InboundAudio
from bridge.transports.webrtc.outbound import (
    DEFAULT_OPUS_COMPLEXITY,
    OPUS,
    PCMA,
    PCMU,
    OutboundAudioTrack,
)
from bridge.transports.webrtc.pacing import FrameClock
from bridge.transports.webrtc.sdp import answer_codec, check_offer, payload_types

log = logging.getLogger(__name__)

EVENTS_CHANNEL = "events"
MAX_PENDING_EVENTS = 512
MAX_CHANNEL_MESSAGE = 64 * 1024  # bytes, in either direction
MAX_CHANNEL_BACKLOG = 1024 * 1024  # bytes queued in SCTP before events are dropped
CLOSE_FLUSH_S = 0.2
ERROR_DELIVERY_GRACE_S = 5.0
# Ends the peer should hear about even if its channel is not open yet (it may still open).
GRACE_REASONS = (CloseReason.PROVIDER_ERROR, CloseReason.PROVIDER_CLOSED)
STATS_INTERVAL_S = 2.0  # how often a call refreshes its RTT, jitter and loss figures


@dataclass(frozen=True)
class WebRTCOptions:
    ice_servers: tuple[str, ...] = ()  # STUN (or TURN) URLs without credentials
    # Servers with credentials (the TURN credentials the bridge mints); they come before
    # ice_servers, as aiortc uses only the first STUN and the first usable TURN URL.
    turn_servers: tuple[IceServer, ...] = ()
    connect_timeout: float = 15.0  # seconds a new peer has to connect
    inactivity_timeout: float = 15.0  # seconds without inbound audio before the call ends
    max_reply_buffer_ms: int = 60_000
    opus_complexity: int = DEFAULT_OPUS_COMPLEXITY
    clock: FrameClock | None = None  # the app's shared pacing clock; None: the track's own
    max_text_chars: int = 4000  # longest typed message on the events channel
    fast_path: bool = True  # media past aiortc's per-packet chain once connected (.fastpath)


class WebRTCCall:
    """See the module docstring."""

    def __init__(
        self,
        conversation: Conversation,
        options: WebRTCOptions,
        *,
        kind: str = "webrtc",
        metrics: Metrics | None = None,
    ) -> None:
        self.kind = kind
        self.conversation = conversation
        self.options = options
        self.metrics = metrics
        self.codec: str | None = None
        self.track = OutboundAudioTrack(
            max_buffer_ms=options.max_reply_buffer_ms,
            metrics=metrics,
            clock=options.clock,
            opus_complexity=options.opus_complexity,
        )
        self.max_message_bytes = MAX_CHANNEL_MESSAGE  # what the peer's SCTP takes, at most ours
        self.events_sent = 0
        self.events_dropped = 0
        self._pc = RTCPeerConnection(rtc_configuration(options.ice_servers, options.turn_servers))
        self._clock_rate = 48000  # the negotiated codec's RTP clock, for jitter in ms
        self._network: dict[str, Any] = {}  # the latest RTCP figures (see _watch_stats)
        self._channel: RTCDataChannel | None = None
        self._pending: deque[str] = deque(maxlen=MAX_PENDING_EVENTS)
        self._tasks = OwnedTasks(
            conversation.id, lambda: conversation.end(CloseReason.INTERNAL_ERROR)
        )
        self._connected = asyncio.Event()
        self._channel_open = asyncio.Event()
        self._inbound: InboundAudio | None = None
        self._receiver: Any = None  # aiortc's RTCRtpReceiver of the call's audio
        self._sender: Any = None  # and its RTCRtpSender
        self._payload_type = -1  # of the codec aiortc sends with (its answer's first)
        self._fast_off: Callable[[], None] | None = None  # takes the media fast path out
        self._answered = False
        self._closed = False
        # Loop times of the connect stages (offer, answer, ice, dtls, channel, provider_open,
        # open_delivered, first_audio): what "press call, hear the reply" is made of.
        self._stages: dict[str, float] = {"offer": asyncio.get_running_loop().time()}
        self._open_waiting = False  # the open event waits for the channel
        conversation.attach(self, self.track, self._send_event)
        conversation.probes.append(self._on_probe)

    @property
    def id(self) -> str:
        return self.conversation.id

    # -- life cycle ----------------------------------------------------------------------------

    async def start(self, offer_sdp: object) -> str:
        """Answer the peer's offer and start the conversation; returns the answer SDP.

        Raises :class:`BadRequest` for an offer we can't use; the conversation is then already
        closed and has left nothing behind.
        """
        offer = check_offer(offer_sdp)
        assert isinstance(offer_sdp, str)
        limit = offer.max_message_size
        self.max_message_bytes = min(limit, MAX_CHANNEL_MESSAGE) if limit else MAX_CHANNEL_MESSAGE
        pc = self._pc
        pc.on("track", self._on_track)
        pc.on("datachannel", self._on_datachannel)
        pc.on("connectionstatechange", self._on_connection_state)
        pc.on("iceconnectionstatechange", self._on_ice_state)
        try:
            transceiver = pc.addTransceiver(self.track, direction="sendrecv")
            transceiver.setCodecPreferences(_codec_preferences(offer.audio.codecs))
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
            dtls.answer_as_server(pc, offer.audio.setup)
            await pc.setLocalDescription(await pc.createAnswer())
            codec = answer_codec(pc.localDescription.sdp)
        except BadRequest:
            await self.conversation.close(CloseReason.BAD_OFFER)
            raise
        except Exception as exc:  # aiortc raises ValueError, OperationError, KeyError...
            await self.conversation.close(CloseReason.BAD_OFFER)
            raise BadRequest(f"the offer could not be used: {exc}", code="invalid_sdp") from None
        if self._closed or self.conversation.state in (State.CLOSING, State.CLOSED):
            # Ended (deleted, shut down) while the offer was answered: nothing more to start.
            raise BadRequest(
                "the session ended while its offer was answered", code="session_ended", status=410
            )
        self.codec = codec.name
        self._clock_rate = codec.rate
        self.track.set_codec(codec)
        input_format, output_format = self.conversation.configure_audio(codec.name.lower())
        self.track.set_source(output_format)
        self.track.set_policy(self.conversation.provider.playout)
        self._inbound = InboundAudio(
            payload_types(pc.localDescription.sdp),
            input_format,
            self.conversation.send_audio,
            asyncio.get_running_loop().time,
            self.metrics.uplink if self.metrics is not None else None,
        )
        self._receiver = transceiver.receiver
        self._sender = transceiver.sender
        self._payload_type = next(iter(payload_types(pc.localDescription.sdp)), -1)
        if not jitter.install(transceiver.receiver, self._inbound):
            await self.conversation.close(CloseReason.INTERNAL_ERROR)
            raise RuntimeError("aiortc changed: the inbound audio path cannot be installed")
        self._tasks.spawn(self._watch_connect(), "connect-watchdog")
        self._tasks.spawn(self._watch_inbound(self._inbound), "inbound-watchdog")
        self._tasks.spawn(self._watch_stats(), "stats")
        self.conversation.start()  # the provider opens while ICE and DTLS run
        self._answered = True
        self._stage("answer")
        return str(pc.localDescription.sdp)

    async def close(self, reason: str) -> None:
        """Deliver the ``close`` event (already queued), release the peer; idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            # A call that failed before the peer was up (e.g. a bad provider key): give the
            # peer a short while to open its channel so it learns why.
            waiting = self._answered and self._pc.connectionState in ("new", "connecting")
            if self._pending and waiting and reason in GRACE_REASONS:
                with contextlib.suppress(TimeoutError):
                    grace = min(ERROR_DELIVERY_GRACE_S, self.options.connect_timeout)
                    await asyncio.wait_for(self._channel_open.wait(), grace)
            await self._flush_channel()
            await self._tasks.cancel_all()
        finally:
            self.track.stop()
            if self._fast_off is not None:
                self._fast_off()
            with contextlib.suppress(Exception):
                await self._pc.close()
            if self._inbound is not None:
                self._inbound.close()

    async def _flush_channel(self) -> None:
        """Give the ``close`` event a moment to leave before the transport goes away."""
        channel = self._channel
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CLOSE_FLUSH_S
        while (  # noqa: ASYNC110 - aiortc signals no "drained" event below its threshold
            channel is not None
            and channel.readyState == "open"
            and channel.bufferedAmount > 0
            and loop.time() < deadline
        ):
            await asyncio.sleep(0.01)

    # -- peer connection -----------------------------------------------------------------------

    async def _watch_connect(self) -> None:
        try:
            await asyncio.wait_for(self._connected.wait(), self.options.connect_timeout)
        except TimeoutError:
            log.warning(
                "session %s: the peer did not connect within %g s (ICE state %s): clients on "
                "other machines need a reachable --ice-addresses or --turn-urls (GET /diag/ice)",
                self.id,
                self.options.connect_timeout,
                self._pc.iceConnectionState,
            )
            self.conversation.end(CloseReason.CONNECT_TIMEOUT)

    def _stage(self, name: str, at: float | None = None) -> None:
        if name not in self._stages:
            self._stages[name] = at if at is not None else asyncio.get_running_loop().time()

    def _on_probe(self, conversation: Conversation, name: str, value: float | str) -> None:
        if name in ("provider_open", "reply_began") and isinstance(value, float):
            self._stage("first_audio" if name == "reply_began" else name, value)

    def _on_ice_state(self) -> None:
        if self._pc.iceConnectionState in ("connected", "completed"):
            self._stage("ice")

    def connect_ms(self) -> dict[str, float]:
        """Each stage's time after the offer arrived, in ms (stages not reached are absent)."""
        offer = self._stages.get("offer")
        if offer is None:
            return {}
        return {k: round((t - offer) * 1000, 1) for k, t in self._stages.items() if k != "offer"}

    def _on_connection_state(self) -> None:
        state = self._pc.connectionState
        if state == "connected":
            self._stage("dtls")
            self._install_fast_path()
            self._connected.set()
            self.conversation.peer_connected()
        elif state == "failed":
            self.conversation.end(CloseReason.PEER_FAILED)
        elif state == "closed":
            self.conversation.end(CloseReason.PEER_CLOSED)

    def _install_fast_path(self) -> None:
        if self._closed or not self.options.fast_path or self._inbound is None:
            return  # closing (close() already took the fast path out), off, or not answered
        if self._receiver is None:
            return
        if self._fast_off is None:
            self._fast_off = fastpath.install_inbound(self._receiver, self._inbound.receive)
        sender, payload_type = self._sender, self._payload_type

        def make() -> Callable[[bytes, int], bool] | None:
            fast = fastpath.FastSender.create(sender, payload_type)
            return fast.send if fast is not None else None

        self.track.drive_when_sending(make)

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind != "audio":  # aiortc queues unread frames without limit: drain them
            self._tasks.spawn(_drain(track), f"drain-{track.kind}")

    async def _watch_inbound(self, inbound: InboundAudio) -> None:
        """End the call when the peer's audio stops (packets are decoded as they arrive, so
        there is no ``recv()`` to time out)."""
        await self._connected.wait()
        loop = asyncio.get_running_loop()
        timeout = self.options.inactivity_timeout
        since = loop.time()
        while True:
            idle = loop.time() - (inbound.last_packet_at or since)
            if idle >= timeout:
                self.conversation.end(CloseReason.INACTIVE)
                return
            await asyncio.sleep(min(timeout - idle, 1.0) + 0.005)

    async def _watch_stats(self) -> None:
        """Keep the latest RTT, jitter and loss for ``describe()`` (which is synchronous):
        aiortc's ``getStats()`` every ``STATS_INTERVAL_S``, from its RTCP bookkeeping."""
        await self._connected.wait()
        while True:
            await asyncio.sleep(STATS_INTERVAL_S)
            try:
                self._network = network_figures(await self._pc.getStats(), self._clock_rate)
            except Exception:  # figures are best effort: never let them end a call
                log.debug("session %s: no WebRTC stats", self.id, exc_info=True)

    # -- the events channel --------------------------------------------------------------------

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
        self._stage("channel")
        if self._open_waiting:
            self._stage("open_delivered")
        self._channel_open.set()
        while self._pending and self._channel is not None:
            self._send_text(self._pending.popleft(), essential=True)

    def _on_message(self, message: str | bytes) -> None:
        """A client message, from inside aiortc's receive loop: nothing may escape from here
        (an exception would end the peer's whole transport)."""
        if self._closed:
            return
        try:
            data = datachannel.parse(message, MAX_CHANNEL_MESSAGE)
            command = datachannel.to_command(data, self.options.max_text_chars)
            self.conversation.submit(command)
        except BadRequest as exc:
            self.conversation.emit(ev.Error(exc.code, exc.message))
        except Exception:
            log.exception("session %s: a client message could not be handled", self.id)
            self.conversation.emit(ev.Error("invalid_event", "the message could not be handled"))

    def _send_event(self, event: ev.Event) -> None:
        wire = ev.to_wire(event)
        if wire is None:
            return
        if isinstance(event, ev.Open):
            channel = self._channel
            if channel is not None and channel.readyState == "open":
                self._stage("open_delivered")
            else:
                self._open_waiting = True
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
        elif not self._closed:
            self._pending.append(text)

    # -- reporting -----------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        conversation, inbound = self.conversation, self._inbound
        return {
            "codec": self.codec,
            "provider_audio": {
                "input": conversation.input_format.encoding,
                "input_rate": conversation.input_format.rate,
                "output_passthrough": self.track.passthrough,
            },
            "reply_buffered_ms": self.track.buffered_ms,
            "reply_dropped_ms": self.track.dropped_ms,
            "reply_underruns": self.track.playout.rebuffers,  # a reply ran dry mid-way
            "connect_ms": self.connect_ms(),
            # Whether the call's audio RTP bypasses aiortc's per-packet chain (see .fastpath).
            "fast_path": {"inbound": self._fast_off is not None, "outbound": self.track.driven},
            "events_sent": self.events_sent,
            "events_dropped": self.events_dropped,
            "inbound": {
                "packets": inbound.packets if inbound else 0,
                "dropped": inbound.dropped if inbound else 0,
                "decode_errors": inbound.decode_errors if inbound else 0,
            },
            "network": {
                "ice_state": self._pc.iceConnectionState,
                "selected_pair": selected_pair(self._pc),
                "rtt_ms": None,
                **self._network,
            },
        }


def selected_pair(pc: RTCPeerConnection) -> dict[str, Any] | None:
    """The ICE candidate pair the media flows on (its types: host, srflx, prflx, relay), or
    None before ICE completes. aiortc has no API for it: this reads aioice's nominated pair
    of the first transceiver's transport (the only one under BUNDLE, the audio one without)."""
    try:
        ice = pc.getTransceivers()[0].receiver.transport.transport
        pair = ice._connection._nominated.get(1)
    except (AttributeError, IndexError):
        return None
    if pair is None:
        return None
    local, remote = pair.local_candidate, pair.remote_candidate
    return {
        "local": {"type": local.type, "protocol": local.transport},
        "remote": {"type": remote.type, "protocol": remote.transport},
    }


def network_figures(report: Mapping[str, Any], clock_rate: int) -> dict[str, Any]:
    """RTT, jitter and loss of the audio streams from an aiortc stats report: ``inbound`` is
    what the bridge receives (its own count), ``outbound`` what the peer reports receiving
    (its RTCP receiver reports); ``rtt_ms`` comes from those reports too."""
    figures: dict[str, Any] = {}
    for stats in report.values():
        if getattr(stats, "kind", None) != "audio":
            continue
        if stats.type == "inbound-rtp":
            received, lost = stats.packetsReceived, max(stats.packetsLost, 0)
            expected = received + lost
            figures["inbound"] = {
                "packets": received,
                "lost": lost,
                "loss_pct": round(100 * lost / expected, 2) if expected else 0.0,
                "jitter_ms": round(stats.jitter * 1000 / clock_rate, 2),
            }
        elif stats.type == "remote-inbound-rtp":
            rtt = stats.roundTripTime
            figures["rtt_ms"] = round(rtt * 1000, 2) if rtt is not None else None
            figures["outbound"] = {
                **figures.get("outbound", {}),
                "lost": max(stats.packetsLost, 0),
                "fraction_lost": round(stats.fractionLost / 256, 4),
                "jitter_ms": round(stats.jitter * 1000 / clock_rate, 2),
            }
        elif stats.type == "outbound-rtp":
            figures["outbound"] = {**figures.get("outbound", {}), "packets": stats.packetsSent}
    return figures


def _codec_preferences(offered: tuple[str, ...]) -> list[Any]:
    """Opus for browsers; G.711 for telephony peers, in the order the peer listed them."""
    ours = {c.name.lower() for c in (OPUS, PCMU, PCMA)}
    order = ["opus"] + [c for c in offered if c in ours and c != "opus"]
    caps = RTCRtpSender.getCapabilities("audio").codecs
    by_name = {c.mimeType.split("/")[1].lower(): c for c in caps}
    return [by_name[name] for name in order if name in by_name]


async def _drain(track: MediaStreamTrack) -> None:
    """Read and drop a track we don't use."""
    with contextlib.suppress(MediaStreamError):
        while True:
            await track.recv()
