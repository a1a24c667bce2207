"""A pipecat echo bot over SmallWebRTC, built the way pipecat's examples build one, for the
load generator (``benchmarks/loadgen.py``) to measure next to the stock aiortc echo server.

Runs with the benchmark-only venv (``bash benchmarks/peers/setup.sh``), never with the
project's: it imports nothing from this repository.

    .venv-bench-pipecat/bin/python benchmarks/pipecat_echo.py --port 8081

Per call: ``POST /offer`` hands the offer to pipecat's ``SmallWebRTCRequestHandler``, whose
callback builds a ``SmallWebRTCTransport`` (audio in and out) and runs
``transport.input() -> Echo -> transport.output()`` in its own ``PipelineWorker`` under its own
``WorkerRunner`` (pipecat 1.3+'s names for ``PipelineTask`` / ``PipelineRunner``, which are now
deprecated aliases) until the peer disconnects. No VAD, STT, LLM or TTS; pipeline defaults
otherwise, so what pipecat does per frame is measured as users run it:

* input: aiortc decodes Opus to 48 kHz stereo, the transport resamples each 20 ms frame to
  the pipeline's default 16 kHz mono (``PipelineParams.audio_in_sample_rate``);
* output: the output transport resamples 16 kHz to the default 24 kHz
  (``audio_out_sample_rate``, a streaming soxr resampler), cuts 40 ms chunks
  (``audio_out_10ms_chunks=4``), and its track hands aiortc 10 ms frames at 24 kHz, which
  aiortc's Opus encoder resamples back to 48 kHz stereo;
* the worker adds pipecat's defaults: an RTVI processor and observer, turn tracking, idle
  detection.

Only ICE and logging are set here: host candidates on 127.0.0.1 only, no STUN/TURN servers,
warnings only.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import Any

from loguru import logger

# Before pipecat is imported: its import logs a banner at INFO.
logger.remove()
logger.add(sys.stderr, level="WARNING")

import peer_support  # noqa: E402  # beside this script
from aiohttp import web  # noqa: E402
from pipecat.frames.frames import (  # noqa: E402
    Frame,
    InputAudioRawFrame,
    OutputAudioRawFrame,
)
from pipecat.pipeline.pipeline import Pipeline  # noqa: E402
from pipecat.pipeline.worker import PipelineWorker  # noqa: E402
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor  # noqa: E402
from pipecat.transports.base_transport import TransportParams  # noqa: E402
from pipecat.transports.smallwebrtc.connection import SmallWebRTCConnection  # noqa: E402
from pipecat.transports.smallwebrtc.request_handler import (  # noqa: E402
    SmallWebRTCRequest,
    SmallWebRTCRequestHandler,
)
from pipecat.transports.smallwebrtc.transport import SmallWebRTCTransport  # noqa: E402
from pipecat.workers.runner import WorkerRunner  # noqa: E402

HANDLER = web.AppKey("handler", SmallWebRTCRequestHandler)
CALLS = web.AppKey("calls", set)


class Echo(FrameProcessor):
    """Turns each input audio frame into an output audio frame: same audio, rate, channels."""

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):
            await self.push_frame(
                OutputAudioRawFrame(
                    audio=frame.audio,
                    sample_rate=frame.sample_rate,
                    num_channels=frame.num_channels,
                ),
                direction,
            )
        else:
            await self.push_frame(frame, direction)


async def run_bot(connection: SmallWebRTCConnection) -> None:
    transport = SmallWebRTCTransport(
        webrtc_connection=connection,
        params=TransportParams(audio_in_enabled=True, audio_out_enabled=True),
    )
    pipeline = Pipeline([transport.input(), Echo(), transport.output()])
    worker = PipelineWorker(pipeline)

    @transport.event_handler("on_client_disconnected")
    async def on_client_disconnected(transport: Any, client: Any) -> None:
        await worker.cancel()

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await runner.run()


async def offer(request: web.Request) -> web.Response:
    body: dict[str, Any] = await request.json()
    calls = request.app[CALLS]

    async def start_bot(connection: SmallWebRTCConnection) -> None:
        # pipecat's runner hands this to FastAPI's BackgroundTasks: the bot starts once the
        # answer is on its way; a task does the same here.
        call = asyncio.ensure_future(run_bot(connection))
        calls.add(call)
        call.add_done_callback(calls.discard)

    answer = await request.app[HANDLER].handle_web_request(
        SmallWebRTCRequest(sdp=body["sdp"], type=body["type"]),  # other keys ignored
        webrtc_connection_callback=start_bot,
    )
    return web.json_response(answer)  # sdp, type and pipecat's pc_id


async def stats(request: web.Request) -> web.Response:
    return web.json_response(peer_support.stats())


async def stats_reset(request: web.Request) -> web.Response:
    return web.json_response({})


async def close_all(app: web.Application) -> None:
    await app[HANDLER].close()  # disconnects every peer
    for call in list(app[CALLS]):
        call.cancel()
    await asyncio.gather(*app[CALLS], return_exceptions=True)


def main() -> None:
    parser = argparse.ArgumentParser(description="pipecat SmallWebRTC echo bot")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)  # aiortc, aioice, aiohttp
    peer_support.loopback_host_candidates()
    app = web.Application()
    app[HANDLER] = SmallWebRTCRequestHandler(ice_servers=[])  # no STUN/TURN
    app[CALLS] = set()
    app.router.add_post("/offer", offer)
    app.router.add_get("/stats", stats)
    app.router.add_post("/stats/reset", stats_reset)
    app.on_shutdown.append(close_all)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None)  # exits on SIGTERM too


if __name__ == "__main__":
    main()
