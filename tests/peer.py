"""A scriptable aiortc client peer for end-to-end tests: it speaks tones, records what it
hears with arrival times, and collects the bridge's ``events`` channel messages."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import aiohttp
import av
import numpy as np
from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack


def tone(
    freq: float, seconds: float, rate: int, amplitude: float = 0.3, phase: int = 0
) -> np.ndarray:
    n = int(seconds * rate)
    t = (np.arange(n) + phase) / rate
    return (np.sin(2 * np.pi * freq * t) * amplitude * 32767).astype(np.int16)


def dominant_frequency(samples: np.ndarray, rate: int) -> float:
    x = samples.astype(np.float64)
    x = x - x.mean()
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.fft.rfftfreq(x.size, 1 / rate)[int(np.argmax(spectrum))])


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) if samples.size else 0.0


class ScriptedMic(MediaStreamTrack):
    """A microphone that plays queued tones and is silent otherwise (48 kHz, 20 ms frames)."""

    kind = "audio"

    def __init__(self, rate: int = 48000) -> None:
        super().__init__()
        self.rate = rate
        self._frame = rate // 50
        self._queue: list[np.ndarray] = []
        self._pending = np.zeros(0, dtype=np.int16)
        self._start: float | None = None
        self._pts = 0
        self._phase = 0

    def say(self, freq: float, seconds: float) -> None:
        self._queue.append(tone(freq, seconds, self.rate))

    def pause(self, seconds: float) -> None:
        self._queue.append(np.zeros(int(seconds * self.rate), dtype=np.int16))

    @property
    def idle(self) -> bool:
        return not self._queue and not self._pending.size

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        wait = self._start + self._pts / self.rate - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        while self._pending.size < self._frame and self._queue:
            self._pending = np.concatenate([self._pending, self._queue.pop(0)])
        chunk = self._pending[: self._frame]
        self._pending = self._pending[self._frame :]
        if chunk.size < self._frame:
            chunk = np.concatenate([chunk, np.zeros(self._frame - chunk.size, dtype=np.int16)])
        frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self.rate
        frame.pts = self._pts
        frame.time_base = Fraction(1, self.rate)
        self._pts += self._frame
        return frame


@dataclass
class Heard:
    """Received audio frames as (arrival loop time, mono int16 samples)."""

    rate: int = 0
    frames: list[tuple[float, np.ndarray]] = field(default_factory=list)

    def loud_frames(self, threshold: float = 500.0) -> list[tuple[float, np.ndarray]]:
        return [(t, s) for t, s in self.frames if rms(s) > threshold]

    def audio_between(self, start: float, end: float) -> np.ndarray:
        parts = [s for t, s in self.frames if start <= t <= end]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)


class ClientPeer:
    """One WebRTC client of the bridge: a scripted mic, a recorder and the events channel."""

    def __init__(
        self, codecs: tuple[str, ...] = ("opus",), configuration: RTCConfiguration | None = None
    ) -> None:
        # ``configuration``: e.g. TURN servers and iceTransportPolicy=RELAY (default: host
        # candidates only, max-bundle).
        self.pc = RTCPeerConnection(
            configuration
            or RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        )
        self.mic = ScriptedMic()
        self.heard = Heard()
        self.events: list[tuple[float, dict[str, Any]]] = []
        self.session_id: str | None = None
        self._codecs = codecs
        self._event_added = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        # The audio transceiver must come first: under max-bundle the first m= line owns the
        # one shared transport.
        self.transceiver = self.pc.addTransceiver(self.mic, direction="sendrecv")
        self.channel = self.pc.createDataChannel("events")
        self.channel.on("message", self._on_message)
        self.pc.on("track", self._on_track)

    def _on_message(self, message: str) -> None:
        self.events.append((asyncio.get_running_loop().time(), json.loads(message)))
        self._event_added.set()

    def _on_track(self, track: MediaStreamTrack) -> None:
        self._tasks.append(asyncio.ensure_future(self._record(track)))

    async def _record(self, track: MediaStreamTrack) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                frame = await track.recv()
                samples = frame.to_ndarray().reshape(-1)
                if frame.layout.name == "stereo":
                    samples = samples[::2]
                self.heard.rate = frame.sample_rate
                self.heard.frames.append((loop.time(), samples.copy()))
        except MediaStreamError:
            pass

    async def offer(self) -> str:
        caps = RTCRtpSender.getCapabilities("audio").codecs
        wanted = [
            c
            for name in self._codecs
            for c in caps
            if c.mimeType.lower() == f"audio/{name.lower()}"
        ]
        self.transceiver.setCodecPreferences(wanted)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return str(self.pc.localDescription.sdp)

    async def connect(
        self, http: aiohttp.ClientSession, base_url: str, **extra: Any
    ) -> dict[str, Any]:
        sdp = await self.offer()
        async with http.post(f"{base_url}/offer", json={"sdp": sdp, "type": "offer", **extra}) as r:
            body = await r.json()
            assert r.status == 200, body
        self.session_id = body["session_id"]
        await self.pc.setRemoteDescription(RTCSessionDescription(body["sdp"], "answer"))
        return body

    def event_types(self) -> list[str]:
        return [e["type"] for _, e in self.events]

    async def wait_event(
        self, kind: str, timeout: float = 10.0, after: int = 0
    ) -> tuple[float, dict[str, Any]]:
        """The first event of ``kind`` at index >= ``after``, waiting for it if needed."""
        deadline = time.monotonic() + timeout
        while True:
            for t, e in self.events[after:]:
                if e["type"] == kind:
                    return t, e
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"no {kind!r} event within {timeout} s; got {self.event_types()}"
                )
            self._event_added.clear()
            try:
                await asyncio.wait_for(self._event_added.wait(), remaining)
            except TimeoutError:
                pass

    async def wait_for_more(self, count: int, timeout: float = 10.0) -> None:
        """Until more than ``count`` events have arrived."""
        async with asyncio.timeout(timeout):
            while len(self.events) <= count:
                self._event_added.clear()
                await self._event_added.wait()

    async def wait_connected(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.pc.connectionState != "connected":
            if time.monotonic() > deadline:
                raise AssertionError(f"peer state {self.pc.connectionState}")
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        await self.pc.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def connected(bridge: Any, codecs: tuple[str, ...] = ("opus",), **extra: Any) -> ClientPeer:
    """A client that has connected to ``bridge`` and seen its ``open`` event."""
    client = ClientPeer(codecs=codecs)
    await client.connect(bridge.http, bridge.url, **extra)
    await client.wait_connected()
    await client.wait_event("open")
    return client
