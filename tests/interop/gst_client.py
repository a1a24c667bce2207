#!/usr/bin/python3
"""Call rtc-bridge from GStreamer's webrtcbin and report whether the echo of our tone came back.

An independent WebRTC stack (libnice, OpenSSL DTLS with webrtcbin's default RSA certificate,
usrsctp, GStreamer RTP) catches what an aiortc-to-aiortc test cannot: both ends of those tests
share aiortc's defaults. webrtcbin keeps its defaults here on purpose (``a=setup:actpass``, its
own certificate, bundle policy ``none``); only 127.0.0.1 is added as an ICE address, because in
the tests' loopback-only network namespace libnice finds no address of its own.

The script runs under Debian's ``/usr/bin/python3`` with ``gi`` (python3-gst-1.0), not the
project's venv, and needs nothing else. It sends a tone in bursts (``--tone-ms`` on,
``--gap-ms`` off), measures how much loud audio it receives and its dominant frequency, ends
the session (``DELETE``) and prints one JSON line. Exit status 0 means the echo was heard.

    /usr/bin/python3 gst_client.py --url http://127.0.0.1:8080 --mode whip --codec opus
    /usr/bin/python3 gst_client.py --check   # are the GStreamer components installed?
"""

from __future__ import annotations

import argparse
import array
import base64
import ctypes
import dataclasses
import json
import math
import os
import re
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

ANALYSIS_RATE = 8000  # Hz: enough for a tone under 4 kHz, and PCMU's own rate
BLOCK = ANALYSIS_RATE // 50  # 20 ms
LOUD_RMS = 0.05 * 32768  # -26 dBFS; the tone is sent at -13.5 dBFS, silence is digital zero
TONE_VOLUME = 0.3

# What each component needs on Debian 12 (python3-gst-1.0 brings python3-gi and the Gst and
# GstSdp typelibs; gstreamer1.0-plugins-bad brings -base and -good).
ELEMENTS = {
    "webrtcbin": "gstreamer1.0-plugins-bad",
    "dtlssrtpenc": "gstreamer1.0-plugins-bad",
    "srtpenc": "gstreamer1.0-plugins-bad",
    "sctpenc": "gstreamer1.0-plugins-bad",
    "nicesrc": "gstreamer1.0-nice",
    "rtpbin": "gstreamer1.0-plugins-good",
    "rtpopuspay": "gstreamer1.0-plugins-good",
    "rtpopusdepay": "gstreamer1.0-plugins-good",
    "rtppcmupay": "gstreamer1.0-plugins-good",
    "rtppcmudepay": "gstreamer1.0-plugins-good",
    "mulawenc": "gstreamer1.0-plugins-good",
    "mulawdec": "gstreamer1.0-plugins-good",
    "audiotestsrc": "gstreamer1.0-plugins-base",
    "volume": "gstreamer1.0-plugins-base",
    "audioconvert": "gstreamer1.0-plugins-base",
    "audioresample": "gstreamer1.0-plugins-base",
    "opusenc": "gstreamer1.0-plugins-base",
    "opusdec": "gstreamer1.0-plugins-base",
    "decodebin": "gstreamer1.0-plugins-base",
    "appsink": "gstreamer1.0-plugins-base",
}
TYPELIBS = {
    "Gst": "python3-gst-1.0",
    "GstSdp": "python3-gst-1.0",
    "GstWebRTC": "gir1.2-gst-plugins-bad-1.0",
}
ENCODERS = {
    "opus": "opusenc ! rtpopuspay pt=96 ! "
    "application/x-rtp,media=audio,encoding-name=OPUS,payload=96,clock-rate=48000",
    "pcmu": "audio/x-raw,rate=8000,channels=1 ! mulawenc ! rtppcmupay ! "
    "application/x-rtp,media=audio,encoding-name=PCMU,payload=0,clock-rate=8000",
}

Gst: Any = None
GstSdp: Any = None
GstWebRTC: Any = None
GLib: Any = None


def load_gi() -> list[str]:
    """Import gi and the typelibs; returns the Debian packages that are missing."""
    global Gst, GstSdp, GstWebRTC, GLib
    try:
        import gi
    except ImportError:
        return ["python3-gst-1.0"]
    missing: list[str] = []
    for name, package in TYPELIBS.items():
        try:
            gi.require_version(name, "1.0")
        except ValueError:
            missing.append(package)
    if missing:
        return missing
    from gi.repository import GLib as _GLib
    from gi.repository import Gst as _Gst
    from gi.repository import GstSdp as _GstSdp
    from gi.repository import GstWebRTC as _GstWebRTC

    Gst, GstSdp, GstWebRTC, GLib = _Gst, _GstSdp, _GstWebRTC, _GLib
    os.environ.setdefault("GST_DEBUG_NO_COLOR", "1")  # the log ends up in test reports
    Gst.init(None)
    return sorted({p for e, p in ELEMENTS.items() if Gst.ElementFactory.find(e) is None})


# -- analysis -----------------------------------------------------------------------------------


def goertzel(samples: list[float], rate: int, freq: float) -> float:
    """Power of ``samples`` at ``freq`` (any frequency, not just DFT bins)."""
    coeff = 2.0 * math.cos(2.0 * math.pi * freq / rate)
    s1 = s2 = 0.0
    for x in samples:
        s1, s2 = x + coeff * s1 - s2, s1
    return s1 * s1 + s2 * s2 - coeff * s1 * s2


def hann(samples: list[int] | array.array[int]) -> list[float]:
    n = len(samples)
    return [x * (0.5 - 0.5 * math.cos(2.0 * math.pi * i / (n - 1))) for i, x in enumerate(samples)]


def dominant_frequency(samples: array.array[int], rate: int) -> float:
    """The strongest frequency: a 10 Hz scan of 50 ms, refined to 0.25 Hz over the whole span.

    Two stages keep pure-Python Goertzel fast; the short window's main lobe (±40 Hz with Hann)
    is wider than the coarse step, so the scan cannot fall between lobes.
    """
    coarse = hann(samples[: rate // 20])
    top = rate // 2 - 50
    best = max(range(50, top, 10), key=lambda f: goertzel(coarse, rate, f))
    fine = hann(samples)
    steps = [best - 15 + 0.25 * i for i in range(121)]
    return max(steps, key=lambda f: goertzel(fine, rate, f))


class Recorder:
    """What webrtcbin decoded, as 20 ms blocks at ``ANALYSIS_RATE``, with arrival times."""

    def __init__(self) -> None:
        self.samples = array.array("h")
        self.arrivals: list[float] = []  # one monotonic time per complete block
        self.loud: list[bool] = []
        self._lock = threading.Lock()

    def add(self, pcm: bytes) -> None:
        chunk = array.array("h")
        chunk.frombytes(pcm)
        if sys.byteorder == "big":
            chunk.byteswap()
        now = time.monotonic()
        with self._lock:
            self.samples.extend(chunk)
            while len(self.loud) < len(self.samples) // BLOCK:
                start = len(self.loud) * BLOCK
                block = self.samples[start : start + BLOCK]
                rms = math.sqrt(sum(x * x for x in block) / BLOCK)
                self.loud.append(rms > LOUD_RMS)
                self.arrivals.append(now)

    def heard_ms(self) -> int:
        with self._lock:
            return sum(self.loud) * 1000 // 50

    def quiet_now(self, blocks: int = 5) -> bool:
        """Whether the last ``blocks`` (100 ms) were quiet."""
        with self._lock:
            return len(self.loud) >= blocks and not any(self.loud[-blocks:])

    def bursts_ms(self) -> list[int]:
        """How long each run of loud audio lasted."""
        with self._lock:
            runs = "".join("x" if loud else " " for loud in self.loud).split()
        return [len(run) * 20 for run in runs]

    def first_loud(self) -> float | None:
        with self._lock:
            return next((t for t, loud in zip(self.arrivals, self.loud, strict=True) if loud), None)

    def longest_loud_run(self) -> array.array[int]:
        """The longest stretch of consecutive loud blocks, without its first and last block
        (onsets and codec ramps), at most one second."""
        with self._lock:
            best, run_start = (0, 0), None
            for i, loud in enumerate([*self.loud, False]):
                if loud and run_start is None:
                    run_start = i
                elif not loud and run_start is not None:
                    if i - run_start > best[1] - best[0]:
                        best = (run_start, i)
                    run_start = None
            first, last = best[0] + 1, min(best[1] - 1, best[0] + 1 + 50)
            if last - first < 5:
                return array.array("h")
            return self.samples[first * BLOCK : last * BLOCK]


# -- signaling ----------------------------------------------------------------------------------

# Straight to the bridge: never through an http_proxy from the environment.
HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http(method: str, url: str, body: bytes | None, content_type: str | None) -> tuple[int, Any]:
    headers = {"Content-Type": content_type} if content_type else {}
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with HTTP.open(request, timeout=10) as response:
            return response.status, (response.read(), response.headers)
    except urllib.error.HTTPError as error:
        return error.code, (error.read(), error.headers)


def post_offer(base: str, mode: str, sdp: str) -> tuple[str, str]:
    """Send the offer the way ``mode`` says; returns (answer SDP, URL that ends the session)."""
    if mode == "whip":
        status, (body, headers) = http("POST", f"{base}/whip", sdp.encode(), "application/sdp")
        if status != 201:
            raise RuntimeError(f"POST /whip: HTTP {status}: {body[:300]!r}")
        location = headers.get("Location")
        if not location:
            raise RuntimeError("POST /whip: 201 without a Location header")
        return body.decode(), urllib.parse.urljoin(base + "/", location)
    payload = json.dumps({"sdp": sdp, "type": "offer"}).encode()
    status, (body, _) = http("POST", f"{base}/offer", payload, "application/json")
    if status != 200:
        raise RuntimeError(f"POST /offer: HTTP {status}: {body[:300]!r}")
    answer = json.loads(body)
    if answer.get("type") != "answer":
        raise RuntimeError(f"POST /offer: not an answer: {answer!r:.300}")
    return answer["sdp"], f"{base}/sessions/{answer['session_id']}"


def sdp_facts(sdp: str) -> dict[str, Any]:
    """The attributes interop depends on, per m= line kind."""
    facts: dict[str, Any] = {}
    kind = "session"
    for line in sdp.splitlines():
        if line.startswith("m="):
            kind = line[2:].split()[0]
            facts[kind] = {"proto": line.split()[2], "codecs": [], "candidates": 0}
        elif kind in facts:
            section = facts[kind]
            if line.startswith("a=rtpmap:"):
                section["codecs"].append(line.split(" ", 1)[1])
            elif line.startswith("a=setup:"):
                section["setup"] = line[len("a=setup:") :]
            elif line.startswith("a=max-message-size:"):
                section["max_message_size"] = int(line.split(":", 1)[1])
            elif line.startswith("a=sctp-port:"):
                section["sctp_port"] = int(line.split(":", 1)[1])
            elif line.startswith("a=fingerprint:"):
                section["fingerprint"] = line.split(":", 1)[1].split()[0]
            elif line.startswith("a=candidate:"):
                section["candidates"] += 1
        if line.startswith("a=group:BUNDLE"):
            facts["bundle"] = line[len("a=group:BUNDLE") :].split()
    return facts


RSA_ENCRYPTION = bytes.fromhex("06092a864886f70d010101")  # the OID, DER-encoded
EC_PUBLIC_KEY = bytes.fromhex("06072a8648ce3d0201")


def certificate_type(pem: str | None) -> str | None:
    """``rsa-<modulus bits>`` or ``ecdsa``, read from a PEM certificate's public key.

    The key algorithm OIDs are distinctive byte strings, so no ASN.1 parser is needed; for RSA,
    the key (NULL, then BIT STRING { SEQUENCE { INTEGER modulus, ... } }) follows the OID.
    """
    if not pem or "BEGIN CERTIFICATE" not in pem:
        return None
    der = base64.b64decode(re.sub(r"-----[^-]+-----|\s", "", pem))
    if EC_PUBLIC_KEY in der:
        return "ecdsa"
    if RSA_ENCRYPTION not in der:
        return "unknown"
    _, _, end = _der(der, der.index(RSA_ENCRYPTION))  # the OID
    _, _, end = _der(der, end)  # NULL
    _, bits, _ = _der(der, end)  # BIT STRING; its first byte counts unused bits
    _, key, _ = _der(der, bits + 1)  # SEQUENCE
    _, start, end = _der(der, key)  # INTEGER: the modulus, with a leading zero byte
    return f"rsa-{len(der[start:end].lstrip(bytes(1))) * 8}"


def _der(der: bytes, at: int) -> tuple[int, int, int]:
    """The DER element at ``at``: (tag, where its value starts, where it ends)."""
    tag, length, start = der[at], der[at + 1], at + 2
    if length & 0x80:
        size = length & 0x7F
        length, start = int.from_bytes(der[start : start + size], "big"), start + size
    return tag, start, start + length


# -- the caller ---------------------------------------------------------------------------------


@dataclasses.dataclass
class Result:
    mode: str
    codec: str
    freq: float
    ok: bool = False
    connected: bool = False
    connection_state: str | None = None
    ice_state: str | None = None
    dtls_state: str | None = None
    local_certificate: str | None = None
    remote_certificate: str | None = None
    offer: dict[str, Any] = dataclasses.field(default_factory=dict)
    answer: dict[str, Any] = dataclasses.field(default_factory=dict)
    heard_ms: int = 0
    frequency: float | None = None
    echo_delay_ms: int | None = None
    bursts_ms: list[int] = dataclasses.field(default_factory=list)
    events: list[str] = dataclasses.field(default_factory=list)
    close_reason: str | None = None
    delete_status: int | None = None  # 200; 404 when the bridge had already ended the call
    elapsed_s: float = 0.0
    errors: list[str] = dataclasses.field(default_factory=list)
    # Reported after our DELETE, when the bridge closes SCTP and DTLS under webrtcbin: expected.
    teardown_errors: list[str] = dataclasses.field(default_factory=list)


def nick(value: Any) -> str | None:
    return value.value_nick if value is not None else None


def own_ice_agent(webrtc: Any) -> Any:
    """webrtcbin's ICE agent, made safe to hold from Python.

    GStreamer 1.22's webrtcbin never sinks its agent's floating reference, so the first Python
    wrapper sinks it and takes webrtcbin's reference over: once the wrapper goes, webrtcbin
    uses a freed agent. Give it a reference of its own back.
    """
    agent = webrtc.get_property("ice-agent")
    if agent.__grefcount__ == 1:  # only ours, though webrtcbin holds it too
        get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
        get_pointer.restype = ctypes.c_void_p
        get_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
        gobject = ctypes.CDLL("libgobject-2.0.so.0")
        gobject.g_object_ref.argtypes = [ctypes.c_void_p]
        gobject.g_object_ref.restype = ctypes.c_void_p
        gobject.g_object_ref(get_pointer(agent.__gpointer__, None))
    return agent


class Caller:
    """One call: webrtcbin sending tone bursts and recording what it hears."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.result = Result(mode=args.mode, codec=args.codec, freq=args.freq)
        self.recorder = Recorder()
        self.tone_starts: list[float] = []
        self._errors_lock = threading.Lock()
        self._hung_up = False
        self._changed = threading.Condition()
        self._loop = GLib.MainLoop()
        self._loop_thread = threading.Thread(target=self._loop.run, daemon=True)
        self.pipeline = Gst.parse_launch(
            "webrtcbin name=webrtc "
            f"audiotestsrc is-live=true wave=sine freq={args.freq} volume={TONE_VOLUME} ! "
            "volume name=gate mute=true ! audioconvert ! audioresample ! "
            f"{ENCODERS[args.codec]} ! webrtc."
        )
        self.webrtc = self.pipeline.get_by_name("webrtc")
        self.gate = self.pipeline.get_by_name("gate")
        self.channel: Any = None
        self.delete_url: str | None = None
        self.ice_agent = own_ice_agent(self.webrtc)
        for address in args.local_address:
            if not self.ice_agent.emit("add-local-ip-address", address):
                self.error(f"libnice refused local address {address}")
        for prop in ("ice-gathering-state", "ice-connection-state", "connection-state"):
            self.webrtc.connect(f"notify::{prop}", self._notify)
        self.webrtc.connect("pad-added", self._on_pad_added)
        bus = self.pipeline.get_bus()
        bus.add_signal_watch()
        bus.connect("message::error", self._on_bus_message)
        bus.connect("message::warning", self._on_bus_message)
        # A failed DTLS handshake reaches the bus only as "Fatal SSL error"; OpenSSL's reason
        # ("no shared cipher") is in the dtlsconnection log, at ERROR level.
        if not os.environ.get("GST_DEBUG"):
            Gst.debug_set_threshold_for_name("dtlsconnection", Gst.DebugLevel.ERROR)
        Gst.debug_add_log_function(self._on_log, None)

    # -- callbacks (GStreamer's threads) --

    def error(self, message: str) -> None:
        with self._errors_lock:
            errors = self.result.teardown_errors if self._hung_up else self.result.errors
            if message not in errors:
                errors.append(message)
        print(f"gst_client: {message}", file=sys.stderr, flush=True)
        self._notify()

    def _notify(self, *_: Any) -> None:
        with self._changed:
            self._changed.notify_all()

    def _on_bus_message(self, _bus: Any, message: Any) -> None:
        if message.type == Gst.MessageType.ERROR:
            err, debug = message.parse_error()
            self.error(f"{message.src.get_name()}: {err.message} ({debug})")
        else:
            warning, debug = message.parse_warning()
            print(f"gst_client: warning {warning.message} ({debug})", file=sys.stderr, flush=True)

    def _on_log(
        self,
        category: Any,
        level: Any,
        _file: str,
        _func: str,
        _line: int,
        _obj: Any,
        msg: Any,
        *_: Any,
    ) -> None:
        if level == Gst.DebugLevel.ERROR and category.get_name() == "dtlsconnection":
            self.error(f"dtlsconnection: {msg.get().strip()}")

    def _on_pad_added(self, _element: Any, pad: Any) -> None:
        if pad.direction != Gst.PadDirection.SRC:
            return
        decode = Gst.ElementFactory.make("decodebin")
        decode.connect("pad-added", self._on_decoded_pad)
        self.pipeline.add(decode)
        decode.sync_state_with_parent()
        pad.link(decode.get_static_pad("sink"))

    def _on_decoded_pad(self, _decodebin: Any, pad: Any) -> None:
        caps = pad.get_current_caps() or pad.query_caps(None)
        if not caps.to_string().startswith("audio/"):
            return
        sink = Gst.parse_bin_from_description(
            "audioconvert ! audioresample ! "
            f"audio/x-raw,format=S16LE,channels=1,rate={ANALYSIS_RATE} ! "
            "appsink name=sink emit-signals=true sync=false",
            True,
        )
        sink.get_by_name("sink").connect("new-sample", self._on_sample)
        self.pipeline.add(sink)
        sink.sync_state_with_parent()
        pad.link(sink.get_static_pad("sink"))

    def _on_sample(self, appsink: Any) -> Any:
        sample = appsink.emit("pull-sample")
        buffer = sample.get_buffer()
        ok, info = buffer.map(Gst.MapFlags.READ)
        if ok:
            try:
                self.recorder.add(bytes(info.data))
            finally:
                buffer.unmap(info)
        self._notify()
        return Gst.FlowReturn.OK

    def _on_channel_message(self, _channel: Any, text: str) -> None:
        try:
            event = json.loads(text)
        except ValueError:
            self.error(f"events channel: not JSON: {text[:100]!r}")
            return
        self.result.events.append(str(event.get("type")))
        if event.get("type") == "close":
            self.result.close_reason = event.get("reason")
        self._notify()

    # -- the call (main thread) --

    def wait(self, condition: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``condition()`` holds, or ``timeout`` passes, or an error is recorded."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not condition():
                left = deadline - time.monotonic()
                if left <= 0 or self.result.errors:
                    return condition()
                self._changed.wait(min(left, 0.05))
        return True

    def promise(self, signal: str, *args: Any) -> Any:
        """Emit ``signal`` and wait for its reply (a ``Gst.Structure`` or None).

        Keep the reply while using a value read from it (the offer): ``get_value`` hands out a
        pointer into the reply, and once the reply is gone webrtcbin reads freed memory.
        """
        promise = Gst.Promise.new()
        self.webrtc.emit(signal, *args, promise)
        if promise.wait() != Gst.PromiseResult.REPLIED:
            raise RuntimeError(f"{signal}: no reply")
        reply = promise.get_reply()
        if reply is not None and reply.has_field("error"):
            raise RuntimeError(f"{signal}: {reply.get_value('error').message}")
        return reply

    def run(self) -> Result:
        started = time.monotonic()
        self._loop_thread.start()
        try:
            self._call(started + self.args.timeout)
        except Exception as exc:  # every failure ends up in the JSON line
            self.error(f"{type(exc).__name__}: {exc}")
        finally:
            self._collect()
            if self.delete_url:
                self._hang_up(self.delete_url)
            self.pipeline.set_state(Gst.State.NULL)
            self._loop.quit()
            self.result.elapsed_s = round(time.monotonic() - started, 2)
        return self.result

    def _call(self, deadline: float) -> None:
        if self.pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
            raise RuntimeError("the pipeline did not start")
        self.channel = self.webrtc.emit("create-data-channel", "events", None)
        if self.channel is None:
            raise RuntimeError("webrtcbin made no data channel")
        self.channel.connect("on-message-string", self._on_channel_message)
        self.channel.connect("on-error", lambda _c, e: self.error(f"data channel: {e}"))

        # webrtcbin 1.22 builds the audio m= line from the caps its sink pad has received (it
        # needs their ssrc); asked any earlier, it replies with no offer and no error.
        sink = self.webrtc.get_static_pad("sink_0")
        if not self.wait(lambda: sink.get_current_caps() is not None, 5):
            raise RuntimeError("no RTP caps reached webrtcbin")
        created = self.promise("create-offer", None)
        offer = created.get_value("offer")
        if offer is None:
            raise RuntimeError("webrtcbin created no offer")
        self.promise("set-local-description", offer)
        # The bridge does not trickle: send the offer once every candidate is in it.
        complete = GstWebRTC.WebRTCICEGatheringState.COMPLETE
        if not self.wait(lambda: self._state("ice-gathering-state") == complete, 10):
            raise RuntimeError("ICE gathering did not complete")
        sdp = self.webrtc.get_property("local-description").sdp.as_text()
        print(f"gst_client: offer\n{sdp}", file=sys.stderr, flush=True)
        self.result.offer = sdp_facts(sdp)

        if self.args.offer_setup != "actpass":
            # Say we insist on our DTLS role; webrtcbin follows what the answer then says.
            sdp = sdp.replace("a=setup:actpass", f"a=setup:{self.args.offer_setup}")
        answer_sdp, self.delete_url = post_offer(self.args.url, self.args.mode, sdp)
        print(f"gst_client: answer\n{answer_sdp}", file=sys.stderr, flush=True)
        self.result.answer = sdp_facts(answer_sdp)
        ok, message = GstSdp.SDPMessage.new_from_text(answer_sdp)
        if ok != GstSdp.SDPResult.OK:
            raise RuntimeError("the answer is not SDP webrtcbin can parse")
        answer = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, message)
        self.promise("set-remote-description", answer)

        connected = GstWebRTC.WebRTCPeerConnectionState.CONNECTED
        if not self.wait(
            lambda: self._state("connection-state") == connected,
            deadline - time.monotonic(),
        ):
            raise RuntimeError(f"not connected: {nick(self._state('connection-state'))}")
        self.result.connected = True
        # Speak once the bridge says the session is open (as its own clients do): audio that
        # arrives while its side of the connection is still coming up is not forwarded.
        self.wait(lambda: "open" in self.result.events, min(5.0, deadline - time.monotonic()))
        GLib.idle_add(self._gate, True)
        # Until one whole echo has played: enough loud audio, and quiet again after it.
        want = self.args.min_heard_ms
        self.wait(
            lambda: self.recorder.heard_ms() >= want and self.recorder.quiet_now(),
            deadline - time.monotonic(),
        )

    def _state(self, prop: str) -> Any:
        return self.webrtc.get_property(prop)

    def _gate(self, on: bool) -> bool:
        """Tone on for ``--tone-ms``, off for ``--gap-ms``, again and again (main loop)."""
        self.gate.set_property("mute", not on)
        if on:
            self.tone_starts.append(time.monotonic())
        GLib.timeout_add(self.args.tone_ms if on else self.args.gap_ms, self._gate, not on)
        return False

    def _collect(self) -> None:
        r = self.result
        r.connection_state = nick(self._state("connection-state"))
        r.ice_state = nick(self._state("ice-connection-state"))
        transceiver = self.webrtc.emit("get-transceiver", 0)
        transport = (
            transceiver.get_property("sender").get_property("transport") if transceiver else None
        )
        if transport is not None:
            r.dtls_state = nick(transport.get_property("state"))
            r.local_certificate = certificate_type(transport.get_property("certificate"))
            r.remote_certificate = certificate_type(transport.get_property("remote-certificate"))
        r.heard_ms = self.recorder.heard_ms()
        r.bursts_ms = self.recorder.bursts_ms()
        loud = self.recorder.longest_loud_run()
        if len(loud):
            r.frequency = round(dominant_frequency(loud, ANALYSIS_RATE), 1)
        first = self.recorder.first_loud()
        if first is not None and self.tone_starts:
            first_tone_end = self.tone_starts[0] + self.args.tone_ms / 1000
            r.echo_delay_ms = round((first - first_tone_end) * 1000)
        r.ok = (
            r.connected
            and r.heard_ms >= self.args.min_heard_ms
            and r.frequency is not None
            and abs(r.frequency - self.args.freq) <= self.args.tolerance
        )

    def _hang_up(self, url: str) -> None:
        self._hung_up = True
        try:
            status, (body, _) = http("DELETE", url, None, None)
        except OSError as exc:
            self.error(f"DELETE {url}: {exc}")
            return
        self.result.delete_status = status
        if status not in (200, 404):
            self.error(f"DELETE {url}: HTTP {status}: {body[:200]!r}")
        elif status == 200 and "open" in self.result.events:
            # The bridge says why the call ended before it closes the channel.
            self.wait(lambda: self.result.close_reason is not None, 1.0)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="the bridge, e.g. http://127.0.0.1:8080")
    parser.add_argument("--mode", choices=("whip", "offer"), default="whip")
    parser.add_argument("--codec", choices=tuple(ENCODERS), default="opus")
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds for the whole call")
    parser.add_argument("--freq", type=float, default=440.0, help="tone frequency (Hz)")
    parser.add_argument("--tone-ms", type=int, default=1000, help="length of each tone burst")
    parser.add_argument(
        "--gap-ms",
        type=int,
        default=2500,
        help="silence between bursts: the echo comes ~0.6 s after a burst and lasts as long; "
        "a burst during it would barge in and cut it short",
    )
    parser.add_argument("--min-heard-ms", type=int, default=800, help="loud audio to wait for")
    parser.add_argument("--tolerance", type=float, default=5.0, help="Hz the echo may be off")
    parser.add_argument(
        "--local-address",
        action="append",
        default=None,
        help="ICE address for libnice (repeatable; default 127.0.0.1, the only one used)",
    )
    parser.add_argument(
        "--offer-setup",
        choices=("actpass", "passive"),
        default="actpass",
        help="the DTLS role the posted offer asks for; passive makes webrtcbin (RSA certificate) "
        "the DTLS server and the bridge the client",
    )
    parser.add_argument("--check", action="store_true", help="only check the GStreamer setup")
    args = parser.parse_args(argv)
    args.local_address = args.local_address or ["127.0.0.1"]
    if not args.check and not args.url:
        parser.error("--url is required")
    if args.url:
        args.url = args.url.rstrip("/")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    missing = load_gi()
    if args.check:
        print(json.dumps({"ok": not missing, "missing_packages": missing}), flush=True)
        return 0 if not missing else 1
    result = Result(mode=args.mode, codec=args.codec, freq=args.freq)
    if missing:
        result.errors.append(f"missing Debian packages: {' '.join(missing)}")
    else:
        try:
            caller = Caller(args)
        except Exception as exc:  # no pipeline, no call: still one JSON line
            result.errors.append(f"{type(exc).__name__}: {exc}")
        else:
            result = caller.run()
    print(json.dumps(dataclasses.asdict(result)), flush=True)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
