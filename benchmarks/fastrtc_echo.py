"""A fastrtc echo server, built the way fastrtc's docs build one, for the load generator
(``benchmarks/loadgen.py``) to measure next to the stock aiortc echo server.

Runs with the benchmark-only venv (``bash benchmarks/peers/setup.sh``), never with the
project's: it imports nothing from this repository.

    .venv-bench-fastrtc/bin/python benchmarks/fastrtc_echo.py --port 8082

A ``Stream`` (audio, send-receive) whose handler is an ``AsyncStreamHandler`` that queues each
frame ``receive()`` gets and returns it from ``emit()`` (through ``fastrtc.wait_for_item``, as
fastrtc's examples do), mounted on a FastAPI app served by uvicorn. ``POST /offer`` is the
load generator's interface in front of fastrtc's own ``/webrtc/offer``: it mints the
``webrtc_id`` fastrtc's browser client would send and calls the same offer handling. What
fastrtc does per call and per frame is its own, measured as users run it:

* per call: a ``MediaRelay`` in front of the remote track, a handler ``copy()``, three tasks
  (input reader, ``emit()`` pump, start-up) and a 30 s connection watchdog; the answer comes
  back after a fixed ``asyncio.sleep(0.1)`` in fastrtc's offer handling;
* per 20 ms frame in: aiortc decodes Opus to 48 kHz stereo, fastrtc's ``av.AudioResampler``
  turns it into the handler's ``input_sample_rate`` mono (48 kHz here, so a downmix only) and
  hands ``receive()`` a numpy array;
* per frame out: ``emit()``'s int16 array is converted to float32, wrapped in a planar-float
  ``AudioFrame``, and resampled to ``output_sample_rate`` stereo s16 (48 kHz here: format and
  upmix only; fastrtc's default is 24 kHz), paced by fastrtc's track and encoded by aiortc.

The handler asks for 48 kHz in and out (fastrtc's defaults are 48 kHz in, 24 kHz out; any
multiple of 50 Hz is accepted). Set here beyond that: host candidates on 127.0.0.1 only, no
STUN/TURN on the server's peer connections (fastrtc otherwise leaves aiortc's default, a public
Google STUN server), gradio's telemetry off, warnings only.

One departure from fastrtc's own client: fastrtc's browser client always opens a data channel
and fastrtc's audio track waits for it before it emits a single frame; the load generator
(a plain WebRTC peer) opens none, so the handler marks its channel as set from the start,
as fastrtc's websocket path does with its stand-in channel.
"""

from __future__ import annotations

import os

# Before gradio is imported (fastrtc builds a gradio UI for every Stream): no telemetry, which
# would otherwise reach out to gradio's and Hugging Face's servers.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")

import argparse
import asyncio
import logging
import signal
import sys
import uuid
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import peer_support  # beside this script
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastrtc import AsyncStreamHandler, Stream, wait_for_item
from fastrtc.stream import Body

RATE = 48000


class Echo(AsyncStreamHandler):
    """Queues each frame it receives and emits it back."""

    def __init__(self) -> None:
        super().__init__(expected_layout="mono", input_sample_rate=RATE, output_sample_rate=RATE)
        self.queue: asyncio.Queue[tuple[int, np.ndarray]] = asyncio.Queue()
        # No data channel will come (see the module docstring): don't wait for one.
        self.channel_set.set()

    async def receive(self, frame: tuple[int, np.ndarray]) -> None:
        await self.queue.put(frame)

    async def emit(self) -> tuple[int, np.ndarray] | None:
        # fastrtc's idiom (its examples' emit()): None after 0.1 s without a frame, so the
        # emit pump sees a hang-up at once instead of after its own 60 s timeout.
        return await wait_for_item(self.queue)

    def copy(self) -> Echo:
        return Echo()


def build_app() -> FastAPI:
    stream = Stream(
        handler=Echo(),
        modality="audio",
        mode="send-receive",
        concurrency_limit=1000,
        server_rtc_configuration={"iceServers": []},  # no STUN/TURN
        verbose=False,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
        yield
        # SIGTERM: hang up every call so uvicorn's shutdown does not wait on them.
        await asyncio.gather(*(pc.close() for pc in list(stream.pcs.values())))

    app = FastAPI(lifespan=lifespan)

    @app.post("/offer")
    async def offer(request: Request) -> Any:
        body = await request.json()
        answer = await stream.offer(
            Body(sdp=body["sdp"], type=body["type"], webrtc_id=uuid.uuid4().hex)
        )
        if isinstance(answer, JSONResponse):  # fastrtc's refusals come as 200 + "failed"
            return Response(answer.body, status_code=503, media_type="application/json")
        return answer

    @app.get("/stats")
    async def stats() -> dict[str, Any]:
        return peer_support.stats()

    @app.post("/stats/reset")
    async def stats_reset() -> dict[str, Any]:
        return {}

    stream.mount(app)  # fastrtc's own /webrtc/offer and friends
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="fastrtc echo server")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    peer_support.loopback_host_candidates()
    # uvicorn shuts down gracefully on SIGTERM, then raises the signal again under the handler
    # that was there before it: with this one the process ends with status 0, not 143.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    uvicorn.run(build_app(), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
