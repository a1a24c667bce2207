"""The baseline: a stock aiortc echo server (MediaRelay), as aiortc's examples build it.

``POST /offer`` takes the same JSON as the bridge; ``GET /stats`` reports CPU and memory so the
load generator measures both servers the same way.
"""

from __future__ import annotations

import argparse
import resource
from typing import Any

from aiohttp import web
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaRelay

from bridge.core.metrics import _rss_bytes
from bridge.transports.webrtc.ice import restrict_host_addresses

PEERS = web.AppKey("peers", set)
RELAY = web.AppKey("relay", MediaRelay)


async def offer(request: web.Request) -> web.Response:
    body: dict[str, Any] = await request.json()
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    request.app[PEERS].add(pc)

    @pc.on("track")
    def on_track(track: Any) -> None:
        pc.addTrack(request.app[RELAY].subscribe(track))

    @pc.on("connectionstatechange")
    async def on_state() -> None:
        if pc.connectionState in ("failed", "closed"):
            request.app[PEERS].discard(pc)
            await pc.close()

    await pc.setRemoteDescription(RTCSessionDescription(body["sdp"], "offer"))
    await pc.setLocalDescription(await pc.createAnswer())
    return web.json_response({"sdp": pc.localDescription.sdp, "type": "answer"})


async def stats(request: web.Request) -> web.Response:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return web.json_response(
        {"cpu_seconds": usage.ru_utime + usage.ru_stime, "rss_bytes": _rss_bytes()}
    )


async def close_all(app: web.Application) -> None:
    for pc in list(app[PEERS]):
        await pc.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    restrict_host_addresses(["127.0.0.1"])
    app = web.Application()
    app[PEERS] = set()
    app[RELAY] = MediaRelay()
    app.router.add_post("/offer", offer)
    app.router.add_get("/stats", stats)
    app.on_shutdown.append(close_all)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()
