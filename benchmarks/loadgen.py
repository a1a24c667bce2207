"""Load generator: N WebRTC calls against a bridge (or the stock echo server), measured.

Cheap on purpose, so it does not become the bottleneck: every call sends the same speech-like
Opus stream, encoded once and looped (the track returns pre-encoded packets), and counts the
reply's RTP packets as they arrive without decoding them (a counting jitter buffer: harness
code, so it may touch aiortc's private receiver). ``--mode click`` instead sends a click every
half second on one call, decodes the reply and reports the round trip of each click.

Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import time
from fractions import Fraction
from typing import Any

import aiohttp
import av
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.jitterbuffer import JitterFrame
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from bridge.transports.webrtc.ice import restrict_host_addresses
from bridge.transports.webrtc.jitter import ImmediateJitterBuffer

RATE = 48000
FRAME = 960
LATE_S = 0.05  # a packet this much later than its stream's best offset counts as late
CLICK_PERIOD_S = 0.5


def speech_like(seconds: float = 8.0, pauses: bool = True) -> np.ndarray:
    """Syllables (harmonic bursts under an envelope) and short gaps; with ``pauses``, a pause
    every phrase (long enough to end a turn for VAD providers: the echo then replies about
    half the time), without them one unbroken stream of speech."""
    rng = np.random.default_rng(7)
    parts: list[np.ndarray] = []
    total = 0.0
    while total < seconds:
        for _ in range(int(rng.integers(3, 7))):
            n = int(rng.uniform(0.12, 0.3) * RATE)
            t = np.arange(n) / RATE
            f0 = rng.uniform(110, 220)
            voice = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))
            envelope = np.sin(np.pi * np.arange(n) / n)
            parts += [voice * (envelope if pauses else 0.6 + 0.4 * envelope) * 0.2]
            parts += [np.zeros(int(rng.uniform(0.04, 0.1) * RATE))] if pauses else []
        parts += [np.zeros(int(0.9 * RATE))] if pauses else []
        total = sum(p.size for p in parts) / RATE
    pcm = np.concatenate(parts)
    return (pcm[: pcm.size // FRAME * FRAME] * 32767).astype(np.int16)


def clicks(seconds: float = 10.0) -> np.ndarray:
    """Silence with a 10 ms 2 kHz burst at the start of every period."""
    pcm = np.zeros(int(seconds * RATE))
    burst = np.sin(2 * np.pi * 2000 * np.arange(RATE // 100) / RATE) * 0.5
    for start in range(0, pcm.size - burst.size, int(CLICK_PERIOD_S * RATE)):
        pcm[start : start + burst.size] = burst
    return (pcm * 32767).astype(np.int16)


def encode(pcm: np.ndarray) -> list[bytes]:
    ctx = av.CodecContext.create("libopus", "w")
    ctx.format, ctx.layout, ctx.sample_rate = "s16", "mono", RATE  # type: ignore[attr-defined]
    ctx.time_base = Fraction(1, RATE)
    ctx.bit_rate = 32000
    ctx.open()
    packets: list[bytes] = []
    for i in range(0, pcm.size, FRAME):
        frame = av.AudioFrame.from_ndarray(
            pcm[i : i + FRAME].reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate, frame.pts, frame.time_base = RATE, i, Fraction(1, RATE)
        packets += [bytes(p) for p in ctx.encode(frame)]  # type: ignore[attr-defined]
    return packets


class LoopedOpus(MediaStreamTrack):
    """Pre-encoded packets, looped, paced at 20 ms; remembers when each went out."""

    kind = "audio"

    def __init__(self, packets: list[bytes], offset: int) -> None:
        super().__init__()
        self.packets, self.index = packets, offset
        self.start: float | None = None
        self.sent = 0
        self.sent_at: dict[int, float] = {}  # packet index in the loop -> send time (click mode)

    async def recv(self) -> av.Packet:
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        if self.start is None:
            self.start = loop.time()
        wait = self.start + self.sent * 0.02 - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        position = self.index % len(self.packets)
        packet = av.Packet(self.packets[position])
        packet.pts, packet.time_base = self.sent * FRAME, Fraction(1, RATE)
        self.sent_at[self.sent] = loop.time()
        self.sent += 1
        self.index += 1
        return packet


class CountingJitterBuffer:
    """Notes each reply packet's arrival and RTP timestamp; decodes nothing."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[float, int]] = []

    def add(self, packet: Any) -> tuple[bool, JitterFrame | None]:
        self.arrivals.append((time.monotonic(), packet.timestamp))
        return False, None


class Call:
    def __init__(self, packets: list[bytes], offset: int, decode: bool) -> None:
        self.session_id: str | None = None
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.track = LoopedOpus(packets, offset)
        transceiver = self.pc.addTransceiver(self.track, direction="sendrecv")
        self.counter = CountingJitterBuffer()
        buffer: Any = ImmediateJitterBuffer() if decode else self.counter
        transceiver.receiver._RTCRtpReceiver__jitter_buffer = buffer  # harness only
        self.heard: list[tuple[float, float]] = []  # click mode: (arrival, rms)
        self.pc.on("track", self._on_track)
        self._reader: asyncio.Task[None] | None = None
        self.decode = decode

    def _on_track(self, track: MediaStreamTrack) -> None:
        if self.decode:
            self._reader = asyncio.ensure_future(self._read(track))

    async def _read(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                samples = frame.to_ndarray().astype(np.float64)
                self.heard.append((time.monotonic(), float(np.sqrt(np.mean(samples**2)))))
        except MediaStreamError:
            pass

    async def connect(self, http: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> None:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        async with http.post(
            f"{url}/offer", json={"sdp": self.pc.localDescription.sdp, "type": "offer", **body}
        ) as r:
            answer = await r.json()
            if r.status != 200:
                raise RuntimeError(f"offer refused: {answer}")
        self.session_id = answer.get("session_id")
        await self.pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))

    async def close(self) -> None:
        await self.pc.close()
        if self._reader is not None:
            self._reader.cancel()


def punctuality(arrivals: list[tuple[float, int]], start: float, end: float) -> tuple[int, int]:
    """Packets received in [start, end], and how many of them were late."""
    window = [(t, ts) for t, ts in arrivals if start <= t <= end]
    if not window:
        return 0, 0
    offsets = [t - ts / RATE for t, ts in window]
    best = min(offsets)
    return len(window), sum(1 for o in offsets if o - best > LATE_S)


async def server_stats(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    """The server's stats; with several workers, CPU and memory summed over all of them."""
    async with http.get(f"{url}/stats") as r:
        stats: dict[str, Any] = await r.json()
    workers = stats.get("workers")
    if workers:
        stats["cpu_seconds"] = sum(w["cpu_seconds"] for w in workers)
        stats["rss_bytes"] = sum(w["rss_bytes"] for w in workers)
        stats["outbound_frames"] = sum(w["outbound_frames"] for w in workers)
        stats["late_frames"] = sum(w["late_frames"] for w in workers)
        stats["workers_sessions"] = [w["sessions"] for w in workers]
    return stats


async def run(args: argparse.Namespace) -> dict[str, Any]:
    restrict_host_addresses(["127.0.0.1"])
    click = args.mode == "click"
    packets = encode(clicks() if click else speech_like(pauses=args.speech == "pauses"))
    body = {"provider": args.provider} if args.provider else {}
    # A new connection per request, as separate browsers would make: with several workers
    # the kernel spreads them; one kept-alive connection would always reach the same worker.
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as http:
        before = await server_stats(http, args.url)
        calls = [Call(packets, i * 37, decode=click) for i in range(args.calls)]
        for call in calls:
            await call.connect(http, args.url, body)
        deadline = time.monotonic() + 30
        while any(c.pc.connectionState != "connected" for c in calls):
            if time.monotonic() > deadline:
                raise RuntimeError("calls did not connect")
            await asyncio.sleep(0.05)
        await asyncio.sleep(args.warmup)
        stages = await connect_stages(http, args.url, calls)
        async with http.post(f"{args.url}/stats/reset") as r:
            await r.read()
        s1, t1, own1 = await server_stats(http, args.url), time.monotonic(), _own_cpu()
        await asyncio.sleep(args.window)
        s2, t2, own2 = await server_stats(http, args.url), time.monotonic(), _own_cpu()
        result: dict[str, Any] = {
            "calls": args.calls,
            "window_s": round(t2 - t1, 3),
            "server_cpu_pct": round((s2["cpu_seconds"] - s1["cpu_seconds"]) / (t2 - t1) * 100, 1),
            "server_rss_mb": round(s2["rss_bytes"] / 2**20, 1),
            "server_rss_idle_mb": round(before["rss_bytes"] / 2**20, 1),
            "loadgen_cpu_pct": round((own2 - own1) / (t2 - t1) * 100, 1),
        }
        if "uplink_ms" in s2:  # the bridge reports its own latency and punctuality
            result["uplink_ms"] = s2["uplink_ms"]
            result["downlink_ms"] = s2["downlink_ms"]
            frames = max(s2["outbound_frames"], 1)
            result["bridge_late_frames_pct"] = round(s2["late_frames"] / frames * 100, 2)
        if stages:
            result["connect_ms"] = stages
        if click:
            result["click_rtt_ms"] = _click_rtts(calls[0])
        else:
            expected = (t2 - t1) * 50
            got = [punctuality(c.counter.arrivals, t1, t2) for c in calls]
            received = sum(n for n, _ in got)
            late = sum(n for _, n in got)
            result["missing_pct"] = round(
                max(expected * len(calls) - received, 0) / (expected * len(calls)) * 100, 2
            )
            result["late_pct"] = round(late / max(received, 1) * 100, 2)
        for call in calls:
            await call.close()
        await asyncio.sleep(4.0)  # the bridge collects and trims memory 2 s after calls end
        after = await server_stats(http, args.url)
        result["server_rss_after_mb"] = round(after["rss_bytes"] / 2**20, 1)
        return result


async def connect_stages(
    http: aiohttp.ClientSession, url: str, calls: list[Call]
) -> dict[str, dict[str, float]]:
    """p50/p99 of each connect stage the bridge measured (``connect_ms`` of its sessions;
    the stock server has none)."""
    seen: dict[str, list[float]] = {}
    for call in calls:
        if not call.session_id:
            continue
        async with http.get(f"{url}/sessions/{call.session_id}") as r:
            if r.status != 200:
                continue
            for stage, ms in (await r.json()).get("connect_ms", {}).items():
                seen.setdefault(stage, []).append(float(ms))
    return {
        stage: {
            "p50": round(float(np.percentile(v, 50)), 1),
            "p99": round(float(np.percentile(v, 99)), 1),
        }
        for stage, v in seen.items()
    }


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _click_rtts(call: Call) -> dict[str, Any]:
    """Match each click sent to the first loud frame heard after it."""
    period = int(CLICK_PERIOD_S * 50)
    sent = [
        t for i, t in call.track.sent_at.items() if (i % (len(call.track.packets))) % period == 0
    ]
    loud = [t for t, level in call.heard if level > 2000]
    rtts = []
    for s in sent:
        after = [t for t in loud if s < t < s + CLICK_PERIOD_S * 0.8]
        if after:
            rtts.append((after[0] - s) * 1000)
    rtts = rtts[2:]  # the first clicks meet cold codecs and buffers
    if not rtts:
        return {"count": 0}
    return {
        "count": len(rtts),
        "p50": round(statistics.median(rtts), 1),
        "min": round(min(rtts), 1),
        "max": round(max(rtts), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--calls", type=int, default=1)
    parser.add_argument("--provider", default="")
    parser.add_argument("--mode", choices=["stream", "click"], default="stream")
    parser.add_argument(
        "--speech", choices=["pauses", "continuous"], default="pauses", help="the load's speech"
    )
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--window", type=float, default=8.0)
    print(json.dumps(asyncio.run(run(parser.parse_args()))), flush=True)


if __name__ == "__main__":
    main()
